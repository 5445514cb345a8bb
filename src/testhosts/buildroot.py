"""Builds in a throw-away copy of a Debian root (the test hosts' recipe) under systemd-nspawn,
cached by the hash of their inputs: the bundle's CPython, the AppImage runtime.

A build script runs as root in the copy (no boot: a build, not a host under test), with its
inputs bound read-only at /in and an empty /out it writes its one result into.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from testhosts import rootfs
from testhosts.settings import Settings

log = logging.getLogger("buildroot")


@dataclasses.dataclass(frozen=True)
class Build:
    name: str  # of the machine, the scratch folder and the log
    suite: str  # Debian suite of the root
    script: Path  # run as /bin/sh /build.sh
    files: tuple[Path, ...] = ()  # copied into the root's / next to the script
    environment: tuple[tuple[str, str], ...] = ()
    facts: str = ""  # anything else the result depends on (versions, pins), as text

    def root_settings(self, settings: Settings) -> Settings:
        return dataclasses.replace(settings, suite=self.suite)

    def cache_key(self, settings: Settings) -> str:
        h = hashlib.sha256(self.script.read_bytes())
        for path in self.files:
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        h.update(repr(self.environment).encode() + self.facts.encode())
        h.update(rootfs.cache_key(self.root_settings(settings)).encode())
        return h.hexdigest()[:12]

    def run(self, settings: Settings, inputs: Path | None, result: str, out: Path) -> None:
        """Build `result` (a file the script writes into /out) and move it to `out`."""
        golden = rootfs.golden(self.root_settings(settings))
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=settings.state_dir, prefix=f"{self.name}-"))
        root, made = scratch / "root", scratch / "out"
        made.mkdir()
        log.info("copying the %s build root", self.suite)
        subprocess.run(["cp", "-a", "--reflink=auto", golden, root], check=True)
        shutil.copy(self.script, root / "build.sh")
        for path in self.files:
            shutil.copy(path, root / path.name)
        binds = [f"--bind-ro={inputs}:/in"] if inputs else []
        # no systemd on the build machine to register with; the build's output on this terminal
        built = subprocess.run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--as-pid2",
                                "--console=pipe", "-M", self.name, "--resolv-conf=copy-host", "-D", root,
                                *binds, f"--bind={made}:/out",
                                *(f"--setenv={k}={v}" for k, v in self.environment),
                                f"--setenv=OUT=/out/{result}", "/bin/sh", "/build.sh"])
        if built.returncode != 0:
            sys.exit(f"{self.name}: the build failed; its root is kept: {root}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made / result, f"{out}.tmp")
        Path(f"{out}.tmp").rename(out)
        shutil.rmtree(scratch)
