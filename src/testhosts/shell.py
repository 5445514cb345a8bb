"""Running the build machine's tools, with errors that say what failed."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("testhosts")


class CommandError(RuntimeError):
    pass


def run(cmd: Sequence[str | Path], *, check: bool = True, input: str | None = None,
        timeout: float | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise CommandError with its stderr when it fails."""
    args = [str(c) for c in cmd]
    log.debug("$ %s", " ".join(args))
    proc = subprocess.run(args, capture_output=True, text=True, input=input, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc
