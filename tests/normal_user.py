"""A normal user of a test host with no python3, as the portable artifacts' tests need one."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITES = ["bullseye", "bookworm", "trixie"]  # Debian 11, 12 and 13


def suites(in_ci: str) -> list:
    """SUITES as test parameters: `in_ci` in every run, the others in `make test-full` only."""
    return [pytest.param(suite, marks=() if suite == in_ci else pytest.mark.full) for suite in SUITES]
WORKFLOW = REPO / "tests/cwl/features.cwl"  # JavaScript, scatter, a subworkflow
EXPECTED = {"echoed": ["a!", "b!"], "shouted": "A!", "joined": "a! b!"}


class NormalUser:
    """User `someone` of a host whose python3 is purged; the files are copied to /var/tmp (the
    host's /tmp is a tmpfs), with the workflow's job as /var/tmp/job.json."""

    def __init__(self, host, suite: str, files: list[Path]) -> None:
        self.host, self.suite = host, suite
        host.exec("sh", "-c", "apt-get -qq -y purge python3 'python3*-minimal' >/dev/null 2>&1; "
                              "! command -v python3")
        host.exec("useradd", "--create-home", "someone")
        for path in files:
            (host.root / "var/tmp" / path.name).write_bytes(path.read_bytes())
        (host.root / "var/tmp/job.json").write_text(json.dumps({"words": ["a", "b"], "shout": True}))

    def __call__(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = self.host.exec("runuser", "-u", "someone", "--", "env", "-i", "HOME=/home/someone",
                             "PATH=/usr/bin:/bin", "sh", "-c", script, check=False)
        if check:
            assert out.returncode == 0, f"{self.suite}: {script}\n{out.stdout}\n{out.stderr}"
        return out

    def processes(self) -> list[str]:
        return self.host.exec("pgrep", "-a", "-u", "someone", check=False).stdout.splitlines()

    def wait_for(self, path: str, text: str, count: int = 1, timeout: float = 240) -> str:
        """The file's text once it holds `text` `count` times."""
        deadline, content = time.monotonic() + timeout, ""
        while content.count(text) < count:
            assert time.monotonic() < deadline, f"{self.suite}: no {text!r} in {path}:\n{content[-3000:]}"
            time.sleep(2)
            content = self(f'cat "{path}"', check=False).stdout
        return content
