"""The CWL conformance suite on a provisioned test host: plain cwltool and cwl-airflow side by side.

Both runners get the same host, the same suite and the same stand-in images for the Docker
Hub images the suite names (made by `docker import` of the harness's own Debian root, as no
registry is reachable): the difference between their results is what the appliance loses.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testhosts import rootfs
from testhosts.host import Host
from testhosts.settings import Settings
from testhosts.shell import run

CWLTEST = "cwltest==2.7.20260814150058"  # also what install-deps.sh puts into the cwl venv
# on a test host, as root: cwltest in a venv of its own
INSTALL_CWLTEST = f"test -x /root/cwltest/bin/cwltest || (python3 -m venv /root/cwltest && " \
                  f"/root/cwltest/bin/pip install -q {CWLTEST})"
SUITE_IN_HOST = "/root/cwl-suite"
BASE_IMAGE = "docker.io/debian:stable-slim"
# the suite's images: what each needs beyond a Debian root, and its entrypoint
STAND_INS = {
    "docker.io/python:3-slim": ("mkdir -p /usr/local/bin && ln -sf /usr/bin/python3 /usr/local/bin/python", None),
    # as the real image's entrypoint: options (or nothing) go to bash, a command runs as given
    "docker.io/bash:4.4": ("mkdir -p /usr/local/bin && ln -sf /bin/bash /usr/local/bin/bash && printf '%s\\n' "
                           "'#!/bin/bash' 'if [ $# -eq 0 ] || [ \"${1#-}\" != \"$1\" ]; then set -- bash \"$@\"; fi' "
                           "'exec \"$@\"' > /usr/local/bin/docker-entrypoint.sh && "
                           "chmod 755 /usr/local/bin/docker-entrypoint.sh", "/usr/local/bin/docker-entrypoint.sh"),
    "docker.io/alpine:latest": ("true", None),
}
# runner -> its command and the arguments cwltest passes before each test's own
RUNNERS = {
    "cwltool": ("/opt/airflow/venv/bin/cwltool", ""),
    "cwl-airflow": ("/usr/local/bin/cwl-airflow", "run"),
}


@dataclass(frozen=True)
class SuiteTest:
    number: int  # cwltest's numbering, from 1
    id: str
    tags: tuple[str, ...]


@dataclass
class RunnerResult:
    runner: str
    seconds: float
    passed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    unsupported: set[str] = field(default_factory=set)
    times: dict[str, float] = field(default_factory=dict)  # test id -> seconds cwltest measured

    def median_time(self, ids: list[str]) -> float:
        return statistics.median(self.times[i] for i in ids) if ids else 0.0


def suite_tests(suite: Path) -> list[SuiteTest]:
    """The suite's tests in cwltest's order ($import of further files followed)."""
    def entries(path: Path) -> Iterable[dict]:
        for entry in yaml.safe_load(path.read_text()) or []:
            if "$import" in entry:
                yield from entries(path.parent / entry["$import"])
            else:
                yield entry

    return [SuiteTest(n, e.get("id") or e.get("label") or str(n), tuple(e.get("tags") or ["required"]))
            for n, e in enumerate(entries(suite / "conformance_tests.yaml"), 1)]


def parse_junit(runner: str, seconds: float, xml: str) -> RunnerResult:
    """cwltest's JUnit report: one testcase per test, its id in `file`."""
    result = RunnerResult(runner, seconds)
    for case in ET.fromstring(xml).iter("testcase"):
        test_id = case.get("file") or case.get("name")
        result.times[test_id] = float(case.get("time") or 0)
        if case.find("skipped") is not None:
            result.unsupported.add(test_id)
        elif case.find("failure") is not None or case.find("error") is not None:
            result.failed.add(test_id)
        else:
            result.passed.add(test_id)
    return result


def prepare(host: Host, settings: Settings, suite: Path) -> None:
    """The suite, cwltest and the stand-in images on the host."""
    target = host.root / SUITE_IN_HOST.lstrip("/")
    run(["rm", "-rf", target])
    run(["cp", "-r", "--no-preserve=mode,ownership", suite, target])  # the suite may be read-only
    host.exec("bash", "-c", INSTALL_CWLTEST)
    if host.exec("docker", "image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        tarball = host.root / "root/stand-in.tar"
        run(["tar", "-cf", tarball, "-C", rootfs.golden(settings), "--exclude=./var/lib/apt/lists", "."])
        host.exec("docker", "import", "/root/stand-in.tar", BASE_IMAGE)
        tarball.unlink()
    for image, (setup, entrypoint) in STAND_INS.items():
        if host.exec("docker", "image", "inspect", image, check=False).returncode == 0:
            continue
        name = "stand-in-" + image.split("/")[-1].replace(":", "-")
        host.exec("docker", "rm", "-f", name, check=False)
        host.exec("docker", "run", "--name", name, BASE_IMAGE, "sh", "-c", setup)
        change = ["--change", f'ENTRYPOINT ["{entrypoint}"]'] if entrypoint else []
        host.exec("docker", "commit", *change, name, image)
        host.exec("docker", "rm", name)


def remove_stand_ins(host: Host) -> None:
    """Leave the host's images as the play left them."""
    host.exec("docker", "rmi", BASE_IMAGE, *STAND_INS, check=False)


def run_suite(host: Host, runner: str, tags: str | None = None, jobs: int = 2, timeout: int = 300,
              env: dict[str, str] | None = None) -> RunnerResult:
    """Run the suite on the host through one runner; what passed, failed, was unsupported."""
    junit = f"/root/cwl-suite/{runner}.xml"
    environment = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    select = f"--tags {shlex.quote(tags)}" if tags else ""
    tool, extra = RUNNERS[runner]
    command = (f"cd {SUITE_IN_HOST} && rm -f {junit} && {environment} /root/cwltest/bin/cwltest "
               f"--test conformance_tests.yaml {select} -j {jobs} --timeout {timeout} --junit-xml {junit} "
               f"--tool {tool} {'-- ' + extra if extra else ''} > /root/cwl-suite/{runner}.log 2>&1")
    start = time.monotonic()
    host.exec("bash", "-c", command, check=False)  # cwltest exits 1 when any test fails
    seconds = time.monotonic() - start
    return parse_junit(runner, seconds, (host.root / junit.lstrip("/")).read_text())


def keep_logs(host: Host, folder: Path, label: str) -> None:
    """Copy each runner's cwltest log (each failure's reason is there) out of the host, which goes
    after the run: folder/conformance-<label>-<runner>.log."""
    for runner in RUNNERS:
        log = host.root / SUITE_IN_HOST.lstrip("/") / f"{runner}.log"
        if log.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, folder / f"conformance-{label}-{runner}.log")


@dataclass
class Comparison:
    tests: list[SuiteTest]
    reference: RunnerResult  # plain cwltool
    appliance: RunnerResult  # cwl-airflow

    def ran(self) -> list[SuiteTest]:
        seen = self.reference.passed | self.reference.failed | self.reference.unsupported
        return [t for t in self.tests if t.id in seen]

    def reference_only(self) -> list[SuiteTest]:
        """Tests that plain cwltool passes and cwl-airflow does not: what the appliance loses."""
        return [t for t in self.ran() if t.id in self.reference.passed and t.id not in self.appliance.passed]

    def per_tag(self) -> dict[str, tuple[int, int, int]]:
        """tag -> (passed by cwl-airflow, passed by cwltool, tests run)."""
        counts: dict[str, list[int]] = {}
        for test in self.ran():
            for tag in ("all", *test.tags):
                c = counts.setdefault(tag, [0, 0, 0])
                c[0] += test.id in self.appliance.passed
                c[1] += test.id in self.reference.passed
                c[2] += 1
        return {tag: (a, r, n) for tag, (a, r, n) in sorted(counts.items(), key=lambda kv: (kv[0] != "all", kv[0]))}

    def write_badges(self, folder: Path) -> None:
        """Badge-style JSON per tag: cwl-airflow's passes over the tests run."""
        folder.mkdir(parents=True, exist_ok=True)
        for tag, (passed, _, total) in self.per_tag().items():
            color = "green" if passed == total else "yellow" if passed >= 0.8 * total else "red"
            (folder / f"{tag}.json").write_text(json.dumps({"subject": tag, "status": f"{passed}/{total}",
                                                            "color": color}) + "\n")

    def markdown(self) -> str:
        ratio = self.appliance.seconds / self.reference.seconds if self.reference.seconds else 0
        both = sorted(self.reference.passed & self.appliance.passed)
        lines = [
            f"Wall time: cwltool {self.reference.seconds:.0f} s, cwl-airflow {self.appliance.seconds:.0f} s "
            f"({ratio:.2f}x).", "",
            f"Median seconds per test that both pass: cwltool {self.reference.median_time(both):.2f}, "
            f"cwl-airflow {self.appliance.median_time(both):.2f}.", "",
            "| tag | cwl-airflow | cwltool | tests |", "|---|---|---|---|",
            *[f"| {tag} | {a} | {r} | {n} |" for tag, (a, r, n) in self.per_tag().items()], "",
        ]
        lost = self.reference_only()
        lines.append(f"Passed by cwltool only: {len(lost)}" + (":" if lost else "."))
        lines += [f"- #{t.number} `{t.id}`" for t in lost]
        return "\n".join(lines) + "\n"
