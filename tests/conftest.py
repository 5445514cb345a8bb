"""Fixtures: a real testbed of systemd-nspawn hosts, provisioned once per test session.

``aio`` gets the whole appliance (group "appliance"); ``peer`` gets nothing and stands for
another machine on the network, to check what the appliance exposes.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from testhosts import Settings, Testbed, facts
from testhosts.airflow import AirflowClient
from testhosts.images import BUSYBOX_TAG, busybox_archive
from testhosts.playbook import PlaybookResult, run_playbook

# tests/cwl_unit runs in its own venv (Airflow, cwltool): `make unit`
collect_ignore = ["cwl_unit"]
REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "build" / "test-logs"
DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW_DAEMONS = facts.DAEMONS
# the scheduler's periodic cleanup (where MariaDB used to crash it) every 20 s instead of 60 s
CLEANUP_INTERVAL = 20
CWL = Path(__file__).resolve().parent / "cwl"
REPORT_PORT = 8765  # the test's report receiver on the appliance host


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--keep-testbed", action="store_true",
                     help="reuse the running test hosts and leave them running (for developing tests)")
    parser.addoption("--reuse-artifacts", action="store_true",
                     help="test the tarball and AppImage already in build/ instead of building them (for developing tests)")
    parser.addoption("--box-disk", help="tests/box: the disk of the built box (make box-test)")
    parser.addoption("--box-accel", default="tcg", help="tests/box: qemu accelerator (kvm, tcg)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # the built box's suite needs a box: `make box box-test`
    if collection_path == Path(__file__).parent / "box" and not config.getoption("--box-disk"):
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # unit tests first: they fail fast, before a testbed is booted; tests that kill or
    # restart services last, so that the others see a host as the play left it
    items.sort(key=lambda item: ("unit" not in item.nodeid.split("::")[0],
                                 item.get_closest_marker("disruptive") is not None))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "disruptive: kills or restarts services of the test host (runs last)")
    config.addinivalue_line("markers", "full: only in `make test-full`, beyond CI's time budget (the artifacts on "
                                       "more Debian releases, the box's base image and smoke build)")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


def _rsa_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair as PEM (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class CWLKeys:
    """Triggers are signed with trigger_private (the appliance has trigger_public); reports are
    signed by the appliance with report_private (tests verify with report_public)."""

    trigger_private: str
    trigger_public: str
    report_private: str
    report_public: str


@pytest.fixture(scope="session")
def cwl_keys() -> CWLKeys:
    return CWLKeys(*_rsa_key_pair(), *_rsa_key_pair())


@pytest.fixture(scope="session")
def testbed(settings: Settings, pytestconfig: pytest.Config, cwl_keys: CWLKeys):
    keep = pytestconfig.getoption("--keep-testbed")
    tb = Testbed("pytest", settings)
    if not keep:
        tb.down()  # what an interrupted earlier run may have left
    try:
        tb.up(["aio", "peer"], groups={"appliance": ["aio"]}, hostvars={"aio": {
            "docker_images_load": [{"name": BUSYBOX_TAG, "archive": str(busybox_archive(settings))}],
            "airflow_config": {"AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": CLEANUP_INTERVAL},
            "airflow_new_secrets_at_first_boot": True,  # as the box has it
            "rabbitmq_new_cookie_at_first_boot": True,
            # a step with coresMin 2 goes to "big"; this host serves both queues
            "cwl_airflow_queues": {"default": {"cpus": 1, "ram": 2048}, "big": {"cpus": 2, "ram": 4096}},
            "airflow_worker_queues": ["default", "big"],
            "cwl_airflow_trigger_public_key": cwl_keys.trigger_public,
            "cwl_airflow_report_private_key": cwl_keys.report_private,
            "cwl_airflow_report_url": f"http://127.0.0.1:{REPORT_PORT}/reports",
        }})
        yield tb
    finally:
        if not keep:
            tb.down()


@pytest.fixture(scope="session")
def provisioned(testbed: Testbed) -> PlaybookResult:
    """The first run of site.yml on the fresh host."""
    result = run_playbook(testbed.inventory, log=LOGS / "site-first-run.log")
    if result.returncode != 0:
        pytest.fail(f"site.yml failed (rc {result.returncode}):\n{result.output[-4000:]}", pytrace=False)
    return result


@dataclass
class Rerun:
    result: PlaybookResult
    pids_before: dict[str, str]
    pids_after: dict[str, str]


def airflow_pids(host) -> dict[str, str]:
    return {d: host.check_output("systemctl show -P MainPID airflow-%s", d) for d in AIRFLOW_DAEMONS}


@pytest.fixture(scope="session")
def rerun(provisioned: PlaybookResult, testbed: Testbed, host) -> Rerun:
    """A second run of site.yml on the provisioned host, with the daemons' PIDs around it."""
    before = airflow_pids(host)
    result = run_playbook(testbed.inventory, log=LOGS / "site-second-run.log")
    return Rerun(result, before, airflow_pids(host))


@pytest.fixture(scope="session")
def credentials(provisioned: PlaybookResult, testbed: Testbed) -> Path:
    return testbed.dir / "credentials"


@pytest.fixture(scope="session")
def host(provisioned: PlaybookResult, testbed: Testbed):
    return testinfra.get_host("ssh://aio", ssh_config=str(testbed.ssh_config))


@pytest.fixture(scope="session")
def peer(testbed: Testbed):
    return testinfra.get_host("ssh://peer", ssh_config=str(testbed.ssh_config))


def tcp_open(from_host, address: str, port: int) -> bool:
    """Whether ``from_host`` can open a TCP connection to address:port."""
    return from_host.run(f"timeout 3 bash -c '</dev/tcp/{address}/{port}'").rc == 0


SECRETS = "/etc/airflow/credentials"  # the airflow role's store of the daemons' secrets (root only)


def secret(host, name: str) -> str:
    """One of the daemons' secrets, as the airflow role stores it (e.g. "jwt_secret")."""
    return host.file(f"{SECRETS}/{name}").content_string


def put_file(host, path: str, content: bytes, owner: str = "root", mode: str = "0644") -> None:
    encoded = base64.b64encode(content).decode()
    host.run_expect([0], "echo %s | base64 -d > %s && chown %s: %s && chmod %s %s",
                    encoded, path, owner, path, mode, path)


@pytest.fixture(scope="session")
def airflow(provisioned: PlaybookResult, testbed: Testbed, credentials: Path):
    """A REST client of the appliance's Airflow, through an ssh tunnel to its loopback port."""
    with testbed.forward("aio", 8080) as port:
        password = (credentials / "airflow-admin.password").read_text().strip()
        client = AirflowClient(f"http://127.0.0.1:{port}", "admin", password)
        client.wait_healthy()
        yield client


@pytest.fixture(scope="session")
def smoke_dag(host, airflow: AirflowClient) -> str:
    put_file(host, "/var/lib/airflow/dags/appliance_smoke.py", (DAGS / "appliance_smoke.py").read_bytes(),
             owner="airflow", mode="0640")
    airflow.wait_dag("appliance_smoke")
    return "appliance_smoke"


@pytest.fixture(scope="session")
def portable_artifacts(pytestconfig: pytest.Config) -> Path:
    """build/ with portable/ (the tarballs) and appimage/ (the AppImage), built now by make
    portable's script (Packer on a Debian 11 build host), as users get them."""
    build = REPO / "build"
    if pytestconfig.getoption("--reuse-artifacts") and any(build.glob("appimage/*.AppImage")):
        return build
    for old in [*build.glob("portable/cwl-airflow-*"), *build.glob("appimage/cwl-airflow-*")]:
        old.unlink()
    subprocess.run([sys.executable, REPO / "scripts/portable.py", "--output-dir", build / "portable",
                    "--appimage-output-dir", build / "appimage"], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    return build
