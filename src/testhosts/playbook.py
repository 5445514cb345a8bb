"""Run ansible-playbook against a testbed and read its PLAY RECAP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.M)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class PlaybookResult:
    returncode: int
    output: str
    seconds: float
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, counter: str) -> int:
        return sum(s.get(counter, 0) for s in self.stats.values())


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap = output.rpartition("PLAY RECAP")[2]
    return {m["host"]: {k: int(v) for k, v in (kv.split("=") for kv in m["counts"].split())}
            for m in RECAP.finditer(recap)}


def run_playbook(inventory: Path, playbook: Path = REPO / "ansible/site.yml", *,
                 extra_vars: dict[str, Any] | None = None, log: Path | None = None,
                 args: list[str] | None = None, echo: bool = False) -> PlaybookResult:
    """Run a playbook with the project's ansible.cfg; keep the whole output in ``log``,
    and print it as it comes when ``echo``."""
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += args or []
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0"}
    start = time.monotonic()
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
    output = "".join(lines)
    result = PlaybookResult(proc.returncode, output, time.monotonic() - start, parse_recap(output))
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n{result.output}\n# {result.seconds:.1f} s, exit {result.returncode}\n")
    return result
