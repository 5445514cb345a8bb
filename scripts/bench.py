#!/usr/bin/env python3
"""Measure the test hosts and the roles; write the figures into a section of docs/benchmarks.md.

Two passes over one host of the appliance play:
- cold: empty cache (debootstrap of the rootfs, every package downloaded);
- warm: cached rootfs and apt archive, as on a developer's machine or CI after one run.
Each pass: rootfs ready, host booted (ssh answers), site.yml on the fresh host, the idempotent
re-run. Usage: scripts/bench.py docs/benchmarks.md
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from testhosts import Settings, Testbed, rootfs
from testhosts.images import BUSYBOX_TAG, busybox_archive
from testhosts.playbook import run_playbook

BEGIN, END = "<!-- bench:roles:begin -->", "<!-- bench:roles:end -->"
GOALS = {"warm fresh apply": 300, "re-run": 45}


def timed(fn):
    start = time.monotonic()
    value = fn()
    return time.monotonic() - start, value


def one_pass(settings: Settings, label: str) -> dict[str, float]:
    figures = {}
    tb = Testbed(f"bench-{label}", settings)
    tb.down()
    image = busybox_archive(settings)
    try:
        figures["host booted"], _ = timed(lambda: tb.up(["bench"], groups={"appliance": ["bench"]}, hostvars={
            "bench": {"docker_images_load": [{"name": BUSYBOX_TAG, "archive": str(image)}]}}))
        logs = Path("build/bench-logs")
        first = run_playbook(tb.inventory, log=logs / f"{label}-first.log")
        if first.returncode:
            sys.exit(f"site.yml failed, see {logs}")
        figures["fresh apply"] = first.seconds
        second = run_playbook(tb.inventory, log=logs / f"{label}-rerun.log")
        if second.returncode or second.total("changed"):
            sys.exit(f"re-run failed or changed something, see {logs}")
        figures["re-run"] = second.seconds
    finally:
        figures["teardown"], _ = timed(tb.down)
    return figures


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) / 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}"


def main(out: Path) -> None:
    warm_settings = Settings.from_env()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        # cold: an empty cache (rootfs tarball, apt archive). Hosts live in the usual state
        # folder, which knows the addresses in use; only the debootstrap runs elsewhere.
        cold_settings = dataclasses.replace(warm_settings, cache_dir=Path(tmp) / "cache")
        debootstrap, _ = timed(lambda: rootfs.golden(dataclasses.replace(cold_settings, state_dir=Path(tmp))))
        cold = one_pass(cold_settings, "cold")
        cold["rootfs ready"] = debootstrap
        # warm: the cached tarball unpacked (hosts use the rootfs already unpacked in the state folder)
        unpack, _ = timed(lambda: rootfs.golden(dataclasses.replace(warm_settings, state_dir=Path(tmp) / "warm")))
    warm = one_pass(warm_settings, "warm")
    warm["rootfs ready"] = unpack
    rows = [
        ("rootfs ready (cold: debootstrap; warm: unpack cached tarball)", cold["rootfs ready"], warm["rootfs ready"], ""),
        ("boot one host until ssh answers", cold["host booted"], warm["host booted"], ""),
        ("site.yml on the fresh host", cold["fresh apply"], warm["fresh apply"],
         f"warm < {GOALS['warm fresh apply']} s"),
        ("site.yml again (changed=0)", cold["re-run"], warm["re-run"], f"< {GOALS['re-run']} s"),
        ("teardown", cold["teardown"], warm["teardown"], ""),
    ]
    table = "\n".join(f"| {name} | {c:.1f} | {w:.1f} | {goal} |" for name, c, w, goal in rows)
    section = f"""{BEGIN}
## Test hosts and the base roles (mysql, rabbitmq, docker, nodejs)

Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {machine()}. Seconds.

| step | cold cache | warm cache | goal |
|---|---|---|---|
{table}
{END}"""
    text = out.read_text() if out.exists() else "# Benchmarks\n\nFigures written by `make bench`; each section names the machine it ran on.\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S) \
        if BEGIN in text else text.rstrip() + "\n\n" + section + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(section)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks.md"))
