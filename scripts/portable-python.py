#!/usr/bin/env python3
"""The portable bundle's relocatable CPython: built once per set of inputs, then taken from the cache.

    scripts/portable-python.py [--print-path]

The inputs are packer/scripts/portable-python.sh (with src/portable/entrypoints.py), the sources named in ansible/group_vars/all/portable.yml
and the Debian 11 build root (the test hosts' recipe, testhosts.rootfs, for suite bullseye); their
hash names the archive in the cache (TESTHOSTS_CACHE), so a change to any of them builds anew.
The build runs in a throw-away copy of that root under systemd-nspawn (no boot: it is a build,
not a host under test); it takes minutes, the cached archive a moment.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

from testhosts import buildroot
from testhosts.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "packer/scripts/portable-python.sh"
ENTRYPOINTS = REPO / "src/portable/entrypoints.py"  # makes pip's scripts relocatable, in the build root
FACTS = REPO / "ansible/group_vars/all/portable.yml"
# compiled in as CPython's last-resort prefix (it finds its real one from its executable's path)
PREFIX = "/opt/cwl-airflow/python"
BUILD_FOLDER = "/var/tmp/portable-python"  # in the build root: no file of the result may name it
log = logging.getLogger("portable-python")


def facts() -> dict:
    return yaml.safe_load(FACTS.read_text())


def recipe(portable: dict) -> buildroot.Build:
    return buildroot.Build(
        "portable-python", portable["portable_build_suite"], BUILD_SCRIPT, (ENTRYPOINTS,),
        (("PREFIX", PREFIX), ("WORK", BUILD_FOLDER), ("SOURCES", "/in"),
         ("PATCHES_FROM", portable["portable_python"]["patches_from"])),
        yaml.safe_dump([portable["portable_python"], portable["portable_openssl"]]))


def archive_path(settings: Settings, portable: dict) -> Path:
    version = portable["portable_python"]["version"]
    return settings.cache_dir / f"portable-python-{version}-{recipe(portable).cache_key(settings)}.tar.gz"


def fetch_sources(settings: Settings, portable: dict, into: Path) -> None:
    """The source files, verified against their pinned SHA-256 (kept in the cache)."""
    downloads = settings.cache_dir / "sources"
    downloads.mkdir(parents=True, exist_ok=True)
    for component in ("portable_python", "portable_openssl"):
        entry = portable[component]
        for name, sha256 in entry["files"].items():
            cached = downloads / name
            if not cached.exists() or hashlib.sha256(cached.read_bytes()).hexdigest() != sha256:
                url = f"{settings.mirror}/{entry['pool']}/{name}"
                log.info("downloading %s", url)
                with urllib.request.urlopen(url, timeout=120) as response, open(f"{cached}.tmp", "wb") as out:
                    shutil.copyfileobj(response, out)
                digest = hashlib.sha256(Path(f"{cached}.tmp").read_bytes()).hexdigest()
                if digest != sha256:
                    Path(f"{cached}.tmp").unlink()
                    sys.exit(f"{url}: SHA-256 {digest}, but {FACTS.name} pins {sha256}")
                Path(f"{cached}.tmp").rename(cached)
            shutil.copy(cached, into / name)


def build(settings: Settings, portable: dict, out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="portable-python-sources-") as sources:
        fetch_sources(settings, portable, Path(sources))
        recipe(portable).run(settings, Path(sources), "python.tar.gz", out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-path", action="store_true", help="print the archive's path only (no build)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings, portable = Settings.from_env(), facts()
    out = archive_path(settings, portable)
    if not args.print_path and not out.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        build(settings, portable, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
