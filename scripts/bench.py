#!/usr/bin/env python3
"""Measure the test hosts, the play and the running appliance; write the figures into
sections of docs/benchmarks.md.

- Roles: two passes over one host, cold (empty cache: debootstrap, every package and wheel
  downloaded) and warm (cached rootfs and pip cache, as on a developer's machine
  or CI after one run): rootfs ready, host booted, site.yml on the fresh host, the re-run.
- Airflow, on the warm host: `systemctl start airflow.target` until every health check is
  green, idle memory of the stack, trigger-to-success of a 2-task DAG through the REST API,
  and each unit's `systemd-analyze security` exposure.
- cwl-airflow, on the warm host: wall time of a 3-step workflow through `cwl-airflow run`
  divided by plain `cwltool` on the same workflow and host, with and without Docker steps.
- The box (--box, after `make box box-test`): the base image build, the phases of Packer's
  build from its timestamped log, the VirtualBox box, sizes, and first boot to healthy.
- The tarball and the AppImage (--portable): scripts/bench_portable.py.

Usage: scripts/bench.py [--airflow-only | --cwl-only | --box | --portable] [docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from testhosts import Settings, Testbed, rootfs
from testhosts.airflow import AirflowClient
from testhosts.facts import DAEMONS, DEBIAN
from testhosts.host import Host
from testhosts.images import BUSYBOX_TAG, busybox_archive
from testhosts.playbook import run_playbook

REPO = Path(__file__).resolve().parents[1]
# cwl-airflow's own units: the reporter, the step service and its Docker proxy
CWL_UNITS = ["cwl-airflow-reporter", "cwl-airflow-step", "cwl-airflow-docker"]
LOGS = REPO / "build/bench-logs"

# Sum of resident (RSS) and proportional (PSS) memory per user, run inside the host.
MEMORY_SCRIPT = """
import collections, json, os, pwd
total = collections.Counter()
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        user = pwd.getpwuid(os.stat(f'/proc/{pid}').st_uid).pw_name
        rollup = open(f'/proc/{pid}/smaps_rollup').read()
    except (OSError, KeyError):
        continue
    for line in rollup.splitlines():
        key, _, value = line.partition(':')
        if key in ('Rss', 'Pss'):
            total[user + ' ' + key] += int(value.split()[0])
print(json.dumps(total))
"""
HEALTHY_SCRIPT = """
import json, urllib.request as u
health = json.load(u.urlopen('http://127.0.0.1:8080/api/v2/monitor/health', timeout=2))
assert all(part['status'] == 'healthy' for part in health.values()), health
u.urlopen('http://127.0.0.1:8974/health', timeout=2)
"""


def timed(fn):
    start = time.monotonic()
    value = fn()
    return time.monotonic() - start, value


def provision(tb: Testbed, label: str, settings: Settings) -> dict[str, float]:
    figures = {}
    image = busybox_archive(settings)
    figures["host booted"], _ = timed(lambda: tb.up(["bench"], groups={"appliance": ["bench"]}, hostvars={
        "bench": {"docker_images_load": [{"name": BUSYBOX_TAG, "archive": str(image)}]}}))
    first = run_playbook(tb.inventory, log=LOGS / f"{label}-first.log")
    if first.returncode:
        sys.exit(f"site.yml failed, see {LOGS}")
    figures["fresh apply"] = first.seconds
    second = run_playbook(tb.inventory, log=LOGS / f"{label}-rerun.log")
    if second.returncode or second.total("changed"):
        sys.exit(f"re-run failed or changed something, see {LOGS}")
    figures["re-run"] = second.seconds
    return figures


def airflow_figures(tb: Testbed, host: Host) -> dict[str, object]:
    figures: dict[str, object] = {}
    host.exec("systemctl", "stop", "airflow.target")
    start = time.monotonic()
    host.exec("systemctl", "start", "airflow.target")
    while host.exec("python3", "-c", HEALTHY_SCRIPT, check=False).returncode:
        if time.monotonic() - start > 300:
            sys.exit("Airflow not healthy 300 s after systemctl start airflow.target")
        time.sleep(0.5)
    figures["start to healthy"] = time.monotonic() - start

    dag = (REPO / "tests/dags/appliance_smoke.py").read_text()
    dag_file = "/var/lib/airflow/dags/appliance_smoke.py"
    host.exec("bash", "-c", f"cat > {dag_file} && chown airflow: {dag_file}", input=dag)
    password = (tb.dir / "credentials/airflow-admin.password").read_text().strip()
    with tb.forward(host.name, 8080) as port:
        client = AirflowClient(f"http://127.0.0.1:{port}", "admin", password)
        client.wait_dag("appliance_smoke")
        figures["first run"], _ = timed(lambda: client.run("appliance_smoke"))
        warm = [timed(lambda: client.run("appliance_smoke"))[0] for _ in range(5)]
    figures["warm runs"] = warm

    time.sleep(60)  # idle: let start-up work settle
    memory = json.loads(host.exec("python3", "-c", MEMORY_SCRIPT).stdout)
    figures["memory"] = {user: (memory.get(f"{user} Rss", 0) / 1024, memory.get(f"{user} Pss", 0) / 1024)
                         for user in ("airflow", "mysql", "rabbitmq")}
    exposure = {}
    for unit in [f"airflow-{daemon}" for daemon in DAEMONS] + CWL_UNITS:
        out = host.exec("systemd-analyze", "security", "--no-pager", f"{unit}.service").stdout
        exposure[unit] = re.search(r"Overall exposure level for \S+: (.*)", out)[1].strip()
    figures["exposure"] = exposure
    return figures


# CPU seconds of each running service: its processes and the children they reaped (the test
# hosts' cgroups are v1, where systemd does not count CPU per unit); JSON {unit: seconds}.
UNITS_CPU_SCRIPT = """
import json, os, subprocess
listed = subprocess.run(['systemctl', 'list-units', '--type=service', '--state=running', '--plain', '--no-legend'],
                        capture_output=True, text=True, check=True).stdout
names = [line.split()[0] for line in listed.splitlines() if line.strip()]
shown = subprocess.run(['systemctl', 'show', '-p', 'Id', '-p', 'MainPID', *names],
                       capture_output=True, text=True, check=True).stdout
owner = {}
for block in shown.strip().split('\\n\\n'):
    fields = dict(line.split('=', 1) for line in block.splitlines() if '=' in line)
    if fields.get('MainPID', '0') != '0':
        owner[fields['MainPID']] = fields['Id'].removesuffix('.service')
stats = {}
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        continue
    stats[pid] = (fields[1], sum(map(int, fields[11:15])))  # utime stime cutime cstime
for _ in range(8):
    owner.update({pid: owner[ppid] for pid, (ppid, _) in stats.items() if pid not in owner and ppid in owner})
usage = {}
for pid, unit in owner.items():
    if pid in stats:
        usage[unit] = usage.get(unit, 0) + stats[pid][1] / os.sysconf('SC_CLK_TCK')
print(json.dumps(usage))
"""
# Runs of a new one-step tool each (as the CWL suite's tests mostly are) through a runner:
# JSON [[wall seconds, CPU seconds of the runner's processes], ...].
TOOL_RUNS_SCRIPT = """
import json, resource, subprocess, sys, time, uuid
from pathlib import Path
runner, runs = sys.argv[1].split(), int(sys.argv[2])
folder = Path('/root/bench')
(folder / 'cpu-job.json').write_text('{"msg": "hi"}')
measured = []
for _ in range(runs):
    tool = folder / f'cpu-{uuid.uuid4().hex[:8]}.cwl'
    tool.write_text('cwlVersion: v1.2\\nclass: CommandLineTool\\nbaseCommand: echo\\n'
                    f'arguments: [x{tool.stem}]\\ninputs: {{msg: {{type: string, inputBinding: {{}}}}}}\\n'
                    'outputs: {out: stdout}\\n')
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    subprocess.run([*runner, '--quiet', '--outdir', '/tmp/cpu-out', tool.name, 'cpu-job.json'], cwd=folder,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured.append([time.monotonic() - start,
                     after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime])
print(json.dumps(measured))
"""
CPU_RUNS = 10
CWL_RUNS = 5
TIMING_SCRIPT = """
import json, statistics, subprocess, sys, time
def wall(cmd):
    start = time.monotonic()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start
cmd, runs = sys.argv[1], int(sys.argv[2])
print(json.dumps([wall(cmd) for _ in range(runs)]))
"""


# The phases of the first run of a newly uploaded one-step tool, as `cwl-airflow run` goes
# through them (the client's calls timed here, the tasks' times from Airflow's REST API).
PHASES_RUNS = 5
PHASES_SCRIPT = """
import json, statistics, sys, time, uuid
from datetime import datetime
from pathlib import Path
start = time.time()
from cwl_airflow import cli
from cwl_airflow.workflow import CWLWorkflow
tag = uuid.uuid4().hex[:8]
path = Path(f"/root/bench/phases-{tag}.cwl")
path.write_text("cwlVersion: v1.2\\nclass: CommandLineTool\\nbaseCommand: echo\\n"
                f"arguments: [x{tag}]\\ninputs: {{msg: {{type: string, inputBinding: {{}}}}}}\\n"
                "outputs: {out: stdout}\\n")
client = cli.Client("http://127.0.0.1:8080")
content = cli._yaml(cli._send_files(client, cli._packed(CWLWorkflow(str(path)))))
t = {"client start, load, pack": time.time()}
dag_id = f"bench_phases_{tag}"
state = client.upload(dag_id, content)
t["upload (validate, store, parse)"] = time.time()
while not state.get("ready"):
    time.sleep(0.02)
    state = client.workflow(dag_id)
t["upload to ready"] = time.time()
run = client.trigger(dag_id, {"msg": "hi"})
triggered = time.time()
while run["state"] not in ("success", "failed"):
    time.sleep(0.02)
    run = client.run(dag_id, run["run_id"])
seen = time.time()
client.outputs(dag_id, run["run_id"])
done = time.time()
ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
dr = client._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run['run_id']}")
tis = {ti["task_id"]: ti for ti in client._call(
    "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run['run_id']}/taskInstances")["task_instances"]}
marks = [("start", start), *t.items(), ("trigger (validate the job)", triggered),
         ("scheduler starts the run", ts(dr["start_date"]))]
for name in tis:  # one task: a tool's whole run
    marks.append((f"{name}: wait for a worker slot", ts(tis[name]["start_date"])))
    marks.append((f"{name}: runs", ts(tis[name]["end_date"])))
marks += [("scheduler ends the run", ts(dr["end_date"])), ("client sees the end", seen),
          ("outputs fetched", done)]
print(json.dumps({"phases": {name: at - before for (_, before), (name, at) in zip(marks, marks[1:])},
                  "total": done - start}))
"""


def phases(host: Host) -> dict[str, object]:
    """Median seconds of each phase over PHASES_RUNS new one-step tools."""
    runs = [json.loads(host.exec("bash", "-c", "set -a && . /etc/airflow/airflow.env && set +a && "
                                 "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(cat /etc/airflow/credentials/sql_alchemy_conn) "
                                 "/opt/airflow/venv/bin/python -", input=PHASES_SCRIPT).stdout)
            for _ in range(PHASES_RUNS)]
    names = list(runs[0]["phases"])
    return {"phases": {n: statistics.median(r["phases"][n] for r in runs) for n in names},
            "total": statistics.median(r["total"] for r in runs), "max": max(r["total"] for r in runs)}


def units_cpu(host: Host) -> dict[str, float]:
    return json.loads(host.exec("python3", "-c", UNITS_CPU_SCRIPT).stdout)


def cpu_per_run(host: Host) -> dict[str, object]:
    """Mean wall and CPU seconds of a run of a new one-step tool: plain cwltool's, and
    `cwl-airflow run`'s with the CPU each service spent meanwhile."""
    def tool_runs(runner: str) -> list[list[float]]:
        return json.loads(host.exec("python3", "-c", TOOL_RUNS_SCRIPT, runner, str(CPU_RUNS)).stdout)

    reference = tool_runs("/opt/airflow/venv/bin/cwltool")
    before = units_cpu(host)
    appliance = tool_runs("cwl-airflow run")
    after = units_cpu(host)
    services = {unit: (seconds - before.get(unit, 0)) / CPU_RUNS for unit, seconds in after.items()}
    return {"cwltool": [statistics.mean(column) for column in zip(*reference)],
            "cwl-airflow run": [statistics.mean(column) for column in zip(*appliance)],
            "services": dict(sorted(((u, s) for u, s in services.items() if s >= 0.005), key=lambda us: -us[1]))}


def cwl_figures(host: Host) -> dict[str, object]:
    """`cwl-airflow run` (first: upload and parse included; then warm) against plain cwltool."""
    host.exec("mkdir", "-p", "/root/bench")
    for name in ("three-step.cwl", "trivial.cwl"):
        host.exec("bash", "-c", f"cat > /root/bench/{name}", input=(REPO / "tests/cwl" / name).read_text())
    host.exec("bash", "-c", "cat > /root/bench/job.json", input='{"name": "bench"}')
    figures: dict[str, object] = {}

    def times(cmd: str, runs: int) -> list[float]:
        return json.loads(host.exec("python3", "-c", TIMING_SCRIPT, f"cd /root/bench && {cmd}", str(runs)).stdout)

    for name, label in (("three-step.cwl", "Docker steps"), ("trivial.cwl", "no container")):
        appliance = f"cwl-airflow run --quiet --outdir /tmp/bench-out {name} job.json"
        cwltool = f"/opt/airflow/venv/bin/cwltool --quiet --outdir /tmp/bench-ref {name} job.json"
        first = times(appliance, 1)[0]
        warm = times(appliance, CWL_RUNS)
        plain = times(cwltool, CWL_RUNS)
        figures[label] = {"first": first, "appliance": statistics.median(warm), "cwltool": statistics.median(plain)}
        print(label, figures[label], warm, plain, flush=True)

    figures["phases"] = phases(host)
    print("phases", figures["phases"], flush=True)

    figures["cpu per run"] = cpu_per_run(host)
    print("cpu per run", figures["cpu per run"], flush=True)

    def cpu_seconds() -> float:
        return units_cpu(host)["airflow-scheduler"]

    time.sleep(30)  # idle
    before = cpu_seconds()
    time.sleep(60)
    figures["scheduler idle cpu"] = (cpu_seconds() - before) / 60 * 100
    return figures


def write_cwl_section(out: Path, measured: str, cwl: dict[str, object]) -> None:
    idle_cpu = cwl.pop("scheduler idle cpu")
    cpu = cwl.pop("cpu per run")
    (ref_wall, ref_cpu), (run_wall, client_cpu) = cpu["cwltool"], cpu["cwl-airflow run"]
    service_rows = "\n".join(f"| {unit} | {seconds:.2f} |" for unit, seconds in cpu["services"].items())
    first = cwl.pop("phases")
    phase_rows = "\n".join(f"| {name} | {seconds:.2f} |" for name, seconds in first["phases"].items())
    rows = "\n".join(
        f"| {label} | {f['first']:.1f} | {f['appliance']:.1f} | {f['cwltool']:.1f} | "
        f"**{f['appliance'] / f['cwltool']:.2f}** | <= 2.0 |" for label, f in cwl.items())
    write_section(out, "cwl", f"""
## cwl-airflow: overhead of the appliance

{measured} A 3-step workflow (tests/cwl/three-step.cwl: write, upper-case, count; and
tests/cwl/trivial.cwl, the same without containers) run by `cwl-airflow run` on the
provisioned host (upload, trigger through the API, 5 Airflow tasks on the Celery worker,
outputs fetched) against plain `cwltool` on the same host. Seconds, median of {CWL_RUNS} runs;
"first" includes the upload and Airflow parsing the new DAG.

| workflow | first run | cwl-airflow run | cwltool | ratio | goal |
|---|---|---|---|---|---|
{rows}

What makes it fast: Celery workers and the DAG processor import cwltool and load the CWL
schemas once, before they fork task or parsing processes (`cwl_airflow.preload`); an upload
stores its DAG itself; task supervisors look at their task every second
(`airflow_worker_min_heartbeat_interval`); and the scheduler sleeps 0.3 s instead of
1 s after an idle loop (`airflow_scheduler_idle_sleep_time`); the cost of the latter: the idle
scheduler uses {idle_cpu:.1f} % of one core.

The first run of a newly uploaded one-step tool (`echo`), upload to outputs, through the
calls `cwl-airflow run` makes: median {first['total']:.2f} s (max {first['max']:.2f} s) of {PHASES_RUNS}
runs, each with a new tool (goal: <= 5 s). Median seconds per phase:

| phase | seconds |
|---|---|
{phase_rows}

Where a run's CPU goes: {CPU_RUNS} runs of a new one-step tool each (as most tests of the CWL
suite are), one after another. Plain cwltool: {ref_wall:.2f} s per run, {ref_cpu:.2f} CPU-seconds.
`cwl-airflow run`: {run_wall:.2f} s per run, the client {client_cpu:.2f} CPU-seconds, and the
services meanwhile ({sum(cpu["services"].values()):.2f} in all; each service's processes and the
children they reaped):

| service | CPU-seconds per run |
|---|---|
{service_rows}
""")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) / 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}"


def write_section(out: Path, name: str, body: str) -> None:
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = out.read_text() if out.exists() else (
        "# Benchmarks\n\nFigures written by `make bench`; each section names the machine it ran on.\n")
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    out.write_text(text)
    print(section)


# Packer's log lines (-timestamp-ui) that start each phase of the box build
BOX_PHASES = {
    "boot to ssh": "Starting VM",
    "build-time CA": "Connected to SSH!",
    "site.yml": "Provisioning with Ansible",
    "cleanup": "Provisioning with shell script: packer/scripts/cleanup.sh",
    "shutdown and disk export (qcow2, compressed)": "Gracefully halting",
    "libvirt box (vagrant post-processor)": "Running post-processor",
    "end": "finished after",
}


def box_figures(box_dir: Path, os_name: str = "debian-12") -> dict[str, object]:
    from datetime import datetime

    starts = {}
    for line in (box_dir / f"build-{os_name}.log").read_text().splitlines():
        stamp, _, message = line.partition("Z: ")
        for phase, marker in BOX_PHASES.items():
            if marker in message and phase not in starts:
                starts[phase] = datetime.fromisoformat(stamp)
    phases = list(BOX_PHASES)
    figures: dict[str, object] = {"phases": {
        phase: (starts[after] - starts[phase]).total_seconds() for phase, after in zip(phases, phases[1:])}}
    version = (REPO / "packer/VERSION").read_text().strip()
    disk = box_dir / os_name / f"cwl-airflow-{os_name}-{version}.qcow2"
    with tempfile.TemporaryDirectory(dir=box_dir) as tmp:
        debian = [DEBIAN[key] for key in ("suite", "mirror", "security_mirror")]
        figures["base image"], _ = timed(lambda: run_checked([REPO / "packer/base-image.sh", f"{tmp}/base.qcow2", *debian]))
        figures["virtualbox box"], _ = timed(lambda: run_checked([REPO / "packer/virtualbox-box.py", disk, f"{tmp}/vb.box"]))
    figures["sizes"] = {name: path.stat().st_size / 2**30 for name, path in (
        ("disk (qcow2, compressed)", disk),
        ("libvirt box", box_dir / f"cwl-airflow-{os_name}-{version}-libvirt.box"),
        ("VirtualBox box", box_dir / f"cwl-airflow-{os_name}-{version}-virtualbox.box"))}
    figures["first boot"] = json.loads((box_dir / "box-test-figures.json").read_text())
    return figures


def run_checked(cmd: list) -> None:
    import subprocess

    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def write_box_section(out: Path, measured: str, box: dict[str, object]) -> None:
    phases = box["phases"]
    rows = [("base image (packer/base-image.sh: debootstrap, grub, qcow2)", box["base image"])]
    rows += [(f"packer: {phase}", seconds) for phase, seconds in phases.items()]
    rows += [("VirtualBox box from the same disk (packer/virtualbox-box.py)", box["virtualbox box"])]
    boot = box["first boot"]
    write_section(out, "box", f"""
## The Vagrant box (make box, make box-test)

{measured} qemu with software emulation (TCG; KVM does not work on this machine), 2 vCPUs,
4 GiB, Debian 12 from the project's base image. With KVM expect the guest phases to be many
times faster. Seconds.

| phase | seconds |
|---|---|
""" + "\n".join(f"| {name} | {seconds:.0f} |" for name, seconds in rows) + f"""
| whole Packer build | {sum(phases.values()):.0f} |
| first boot of the box until ssh answers | {boot['boot_to_ssh_s']:.0f} |
| first boot until every Airflow health check is green | {boot['boot_to_healthy_s']:.0f} |
""" + ("" if "vagrant_up_s" not in boot else f"""| `vagrant up --provider=libvirt` (driver qemu) until its message | {boot['vagrant_up_s']:.0f} |
| `vagrant up` until Airflow is healthy through the forwarded port | {boot['vagrant_up_to_healthy_s']:.0f} |
""") + f"""
| artifact | size (GiB) | goal |
|---|---|---|
""" + "\n".join(f"| {name} | {size:.2f} | {'<= 1.5' if 'box' in name else ''} |" for name, size in box["sizes"].items()))


def main(out: Path, only: str | None = None) -> None:
    warm_settings = Settings.from_env()
    measured = f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {machine()}."
    if only == "box":
        write_box_section(out, measured.replace("`make bench`", "`make bench-box`"), box_figures(REPO / "build/box"))
        return
    if only == "portable":
        import bench_portable

        on = measured.replace("`make bench`", "`make bench-portable`")
        write_section(out, "portable", bench_portable.markdown(on, bench_portable.figures(warm_settings)))
        return
    if only:
        tb = Testbed("bench-warm", warm_settings)
        tb.down()
        try:
            provision(tb, "warm", warm_settings)
            if only == "airflow":
                write_airflow_section(out, measured, airflow_figures(tb, tb.host("bench")))
            else:
                write_cwl_section(out, measured, cwl_figures(tb.host("bench")))
        finally:
            tb.down()
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        # cold: an empty cache (rootfs tarball, pip cache). Hosts live in the usual
        # state folder, which knows the addresses in use; only the debootstrap runs elsewhere.
        cold_settings = dataclasses.replace(warm_settings, cache_dir=Path(tmp) / "cache")
        debootstrap, _ = timed(lambda: rootfs.golden(dataclasses.replace(cold_settings, state_dir=Path(tmp))))
        cold_tb = Testbed("bench-cold", cold_settings)
        cold_tb.down()
        try:
            cold = provision(cold_tb, "cold", cold_settings)
        finally:
            cold["teardown"], _ = timed(cold_tb.down)
        unpack, _ = timed(lambda: rootfs.golden(dataclasses.replace(warm_settings, state_dir=Path(tmp) / "warm")))
    tb = Testbed("bench-warm", warm_settings)
    tb.down()
    try:
        warm = provision(tb, "warm", warm_settings)
        af = airflow_figures(tb, tb.host("bench"))
        cwl = cwl_figures(tb.host("bench"))
    finally:
        warm["teardown"], _ = timed(tb.down)

    rows = [
        ("rootfs ready (cold: debootstrap; warm: unpack the cached tarball)", debootstrap, unpack, ""),
        ("boot one host until ssh answers", cold["host booted"], warm["host booted"], ""),
        ("site.yml on the fresh host (all roles, Airflow included)", cold["fresh apply"], warm["fresh apply"], "warm < 300"),
        ("site.yml again (changed=0)", cold["re-run"], warm["re-run"], "< 45"),
        ("teardown", cold["teardown"], warm["teardown"], ""),
    ]
    write_section(out, "roles", f"""
## Test hosts and the play

{measured} Seconds.

| step | cold cache | warm cache | goal |
|---|---|---|---|
""" + "\n".join(f"| {name} | {c:.1f} | {w:.1f} | {goal} |" for name, c, w, goal in rows))

    write_airflow_section(out, measured, af)
    write_cwl_section(out, measured, cwl)


def write_airflow_section(out: Path, measured: str, af: dict[str, object]) -> None:
    memory = af["memory"]
    total_rss = sum(rss for rss, _ in memory.values())
    total_pss = sum(pss for _, pss in memory.values())
    warm_runs = af["warm runs"]
    write_section(out, "airflow", f"""
## Airflow on one host (MariaDB, RabbitMQ, Celery worker with concurrency 2)

{measured} The host: a systemd-nspawn test host provisioned by site.yml with its defaults.

| figure | measured | goal |
|---|---|---|
| `systemctl start airflow.target` until every health check is green | {af['start to healthy']:.1f} s | <= 45 s |
| 2-task DAG, REST trigger to `success`, first run after the start | {af['first run']:.1f} s | |
| the same, warm: median (max) of 5 | {statistics.median(warm_runs):.1f} s ({max(warm_runs):.1f} s) | <= 5 s |
| idle memory of the Airflow daemons, RSS (PSS) | {memory['airflow'][0]:.0f} MiB ({memory['airflow'][1]:.0f} MiB) | |
| idle memory of MariaDB, RSS (PSS) | {memory['mysql'][0]:.0f} MiB ({memory['mysql'][1]:.0f} MiB) | |
| idle memory of RabbitMQ, RSS (PSS) | {memory['rabbitmq'][0]:.0f} MiB ({memory['rabbitmq'][1]:.0f} MiB) | |
| idle memory of the whole stack, RSS (PSS) | {total_rss:.0f} MiB ({total_pss:.0f} MiB) | <= 2048 MiB |

`systemd-analyze security` exposure of each unit (0 = most locked down, 10 = not at all):

| unit | exposure |
|---|---|
""" + "\n".join(f"| {unit}.service | {e} |" for unit, e in af["exposure"].items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs/benchmarks.md")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--airflow-only", dest="only", action="store_const", const="airflow",
                      help="one warm host, the Airflow section only")
    only.add_argument("--cwl-only", dest="only", action="store_const", const="cwl",
                      help="one warm host, the cwl-airflow section only")
    only.add_argument("--box", dest="only", action="store_const", const="box",
                      help="the box section, from the last `make box box-test` (make bench-box)")
    only.add_argument("--portable", dest="only", action="store_const", const="portable",
                      help="build the tarball and the AppImage, then their figures (make bench-portable)")
    args = parser.parse_args()
    main(args.out, args.only)
