"""Fixtures: a real testbed of systemd-nspawn hosts, provisioned once per test session.

``aio`` gets the whole appliance (group "appliance"); ``peer`` gets nothing and stands for
another machine on the network, to check what the appliance exposes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra

from testhosts import Settings, Testbed
from testhosts.images import BUSYBOX_TAG, busybox_archive
from testhosts.playbook import PlaybookResult, run_playbook

LOGS = Path(__file__).resolve().parents[1] / "build" / "test-logs"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--keep-testbed", action="store_true",
                     help="reuse the running test hosts and leave them running (for developing tests)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # unit tests first: they fail fast, before a testbed is booted
    items.sort(key=lambda item: "unit" not in item.nodeid.split("::")[0])


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def testbed(settings: Settings, pytestconfig: pytest.Config):
    keep = pytestconfig.getoption("--keep-testbed")
    tb = Testbed("pytest", settings)
    if not keep:
        tb.down()  # what an interrupted earlier run may have left
    try:
        tb.up(["aio", "peer"], groups={"appliance": ["aio"]}, hostvars={"aio": {
            "docker_images_load": [{"name": BUSYBOX_TAG, "archive": str(busybox_archive(settings))}],
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


@pytest.fixture(scope="session")
def rerun(provisioned: PlaybookResult, testbed: Testbed) -> PlaybookResult:
    """A second run of site.yml on the provisioned host."""
    return run_playbook(testbed.inventory, log=LOGS / "site-second-run.log")


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
