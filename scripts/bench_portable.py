"""The portable artifacts' figures (scripts/bench.py --portable, make bench-portable): sizes, the
build, unpacking, `up` until every health check is green and its idle memory, for the tarball
and for the AppImage (through FUSE and extracted), and the 3-step workflows of the appliance's
benchmark through the tarball against the bundle's own cwltool. On a Debian 12 test host with
Debian's Docker and FUSE, as a normal user (group docker) with no python3, as users run them."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from testhosts import Settings, facts, one_host
from testhosts.images import busybox_archive
from testhosts.normal_user import DOCKER_WORKFLOW, NormalUser

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
TARBALL = BUILD / "portable" / f"{facts.TARBALL}.tar.gz"
APPIMAGE = BUILD / "appimage" / facts.APPIMAGE
BUNDLE = f"$HOME/{facts.TARBALL}"
APP = f"$HOME/{facts.APPIMAGE}"
WORKFLOWS = {"Docker steps": DOCKER_WORKFLOW, "no container": REPO / "tests/cwl/trivial.cwl"}
RUNS = 5

# The user's shell measures itself (date +%s.%N before and after), so that entering the host
# is not counted; `up` is started in the background and watched for its "ready:" line.
SECONDS = 'set -e; s=$(date +%s.%N); {script}; e=$(date +%s.%N); echo "$s $e"'
UP = ('set -e; s=$(date +%s.%N); CWL_AIRFLOW_HOME="{home}" setsid {command} > "{log}" 2>&1 < /dev/null & '
      'until grep -q "ready:" "{log}" 2>/dev/null; do kill -0 $! 2>/dev/null || exit 1; sleep 0.05; done; '
      'e=$(date +%s.%N); echo "$s $e"')
# Resident (RSS) and proportional (PSS) memory of the user's processes, in KiB
MEMORY = ("for p in $(pgrep -u someone); do cat /proc/$p/smaps_rollup 2>/dev/null; done | "
          "awk '/^Rss:/ {r += $2} /^Pss:/ {p += $2} END {print r, p}'")


def _elapsed(out: str) -> float:
    start, end = map(float, out.split()[-2:])
    return end - start


def _seconds(user: NormalUser, script: str) -> float:
    return _elapsed(user(SECONDS.format(script=script)).stdout)


def _start(user: NormalUser, command: str, home: str) -> float:
    """Seconds until `command` (an `up` with CWL_AIRFLOW_HOME=home) says every check is green."""
    log = f"$HOME/up-{int(time.time() * 1000)}.log"
    return _elapsed(user(UP.format(command=command, log=log, home=home)).stdout)


def _idle_memory(user: NormalUser) -> dict[str, float]:
    """RSS and PSS in MiB of the user's processes, after 30 s of idleness."""
    time.sleep(30)
    rss, pss = map(int, user.host.exec("sh", "-c", MEMORY).stdout.split())
    return {"rss": rss / 1024, "pss": pss / 1024}


def _stop(user: NormalUser, home: str) -> None:
    """SIGTERM to `up`; nothing may be left: no process, no mount."""
    user(f'kill -TERM "$(cat "{home}/up.lock")"')
    deadline = time.monotonic() + 90
    while user.processes() or user("ls -d /tmp/.mount_* 2>/dev/null", check=False).stdout:
        if time.monotonic() > deadline:
            sys.exit(f"left after SIGTERM of up: {user.processes()}")
        time.sleep(0.5)


def _up(user: NormalUser, command: str, home: str) -> dict[str, float]:
    figures = {"ready": _start(user, command, home), **_idle_memory(user)}
    _stop(user, home)
    return figures


def _workflows(user: NormalUser) -> dict[str, dict[str, float]]:
    """Each workflow through the tarball's `cwl-airflow run` (first: the upload) and its cwltool."""
    user('echo \'{"name": "bench"}\' > "$HOME/bench.json"')
    figures = {}
    for label, workflow in WORKFLOWS.items():
        args = f'--quiet --outdir "$HOME/out" /var/tmp/{workflow.name} "$HOME/bench.json" > /dev/null'
        run = f'"{BUNDLE}/bin/cwl-airflow" run {args}'
        first = _seconds(user, run)
        warm = [_seconds(user, run) for _ in range(RUNS)]
        plain = [_seconds(user, f'"{BUNDLE}/bin/cwltool" {args}') for _ in range(RUNS)]
        figures[label] = {"first": first, "appliance": statistics.median(warm), "cwltool": statistics.median(plain)}
        print(label, figures[label], warm, plain, flush=True)
    return figures


def figures(settings: Settings) -> dict[str, object]:
    build_start = time.monotonic()
    subprocess.run([sys.executable, REPO / "scripts/portable.py"], check=True)
    measured: dict[str, object] = {
        "build": time.monotonic() - build_start,
        "sizes": {path.name: path.stat().st_size / 1e6 for path in (
            TARBALL, TARBALL.with_name(f"{facts.TARBALL}.tar.zst"), APPIMAGE)}}
    with one_host("bench-portable", settings, "bookworm", devices=["/dev/fuse"]) as host:
        user = NormalUser(host, "bookworm", [TARBALL, APPIMAGE, *WORKFLOWS.values()])
        user.use_docker(busybox_archive(settings))
        user.install("fuse3")
        host.exec("chmod", "0666", "/dev/fuse")
        measured["unpack"] = _seconds(user, f'tar -xzf /var/tmp/{TARBALL.name} -C "$HOME"')
        measured["unpacked"] = int(user(f'du -sk "{BUNDLE}"').stdout.split()[0]) / 1024
        up, home = f'"{BUNDLE}/bin/cwl-airflow" up', "$HOME/.local/share/cwl-airflow"
        measured["tarball, fresh home"] = _up(user, up, home)
        measured["tarball, again"] = {"ready": _start(user, up, home), **_idle_memory(user)}
        measured["workflows"] = _workflows(user)
        _stop(user, home)
        user(f'cp /var/tmp/{APPIMAGE.name} "{APP}" && chmod +x "{APP}"')
        measured["AppImage through FUSE, fresh home"] = _up(user, f'"{APP}"', "$HOME/fuse-home")
        measured["AppImage through FUSE, again"] = _up(user, f'"{APP}"', "$HOME/fuse-home")
        extracted = f'env APPIMAGE_EXTRACT_AND_RUN=1 "{APP}"'
        measured["AppImage extracted, first start (extracts)"] = _up(user, extracted, "$HOME/extracted-home")
        measured["AppImage extracted, again (the kept copy)"] = _up(user, extracted, "$HOME/extracted-home")
    return measured


def markdown(measured_on: str, measured: dict[str, object]) -> str:
    sizes = measured["sizes"]
    starts = [(name, value) for name, value in measured.items() if isinstance(value, dict) and "ready" in value]
    workflows = measured["workflows"]
    return f"""
## The portable tarball and the AppImage (make bench-portable)

{measured_on} `make portable` (the tarball and the AppImage, from the caches as they were:
the bundle's CPython, pip's wheels, the build root) took {measured['build']:.0f} s. On a Debian 12
test host with Debian's Docker and FUSE, as a normal user in group docker, with no python3:

| artifact | MB | goal |
|---|---|---|
""" + "\n".join(f"| {name} | {mb:.1f} | {'<= 150' if name.endswith('.tar.gz') else '<= 160' if name.endswith('.AppImage') else ''} |"
                for name, mb in sizes.items()) + f"""
| the tarball unpacked | {measured['unpacked']:.0f} (MiB) | |

Unpacking the tar.gz (`tar -xzf`): {measured['unpack']:.1f} s.

| `up` | until every health check is green (s) | idle RSS (MiB) | idle PSS (MiB) | goal |
|---|---|---|---|---|
""" + "\n".join(f"| {name} | {f['ready']:.1f} | {f['rss']:.0f} | {f['pss']:.0f} | {'<= 20 s' if 'tarball' in name else ''} |"
                for name, f in starts) + """

The appliance's 3-step workflows (tests/cwl/three-step.cwl in Docker, tests/cwl/trivial.cwl
without) through the tarball's `cwl-airflow run` and through its own `cwltool`, seconds, median
of 5 runs; "first" includes the upload:

| workflow | first run | cwl-airflow run | cwltool | ratio |
|---|---|---|---|---|
""" + "\n".join(f"| {label} | {w['first']:.1f} | {w['appliance']:.1f} | {w['cwltool']:.1f} | "
                f"{w['appliance'] / w['cwltool']:.2f} |" for label, w in workflows.items())
