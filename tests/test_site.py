"""site.yml as a whole: idempotent, rejects bad variables before touching a host, exposes nothing."""

import subprocess
from pathlib import Path

import pytest

from testhosts.playbook import run_playbook
from conftest import LOGS

REPO = Path(__file__).resolve().parents[1]


def test_first_run_changes_the_host(provisioned):
    assert provisioned.stats["aio"]["failed"] == 0
    assert provisioned.stats["aio"]["changed"] > 0


def test_second_run_changes_nothing(rerun):
    result = rerun.result
    assert result.returncode == 0, result.output[-3000:]
    assert result.stats["aio"]["failed"] == 0
    assert result.stats["aio"]["changed"] == 0, [
        line for line in result.output.splitlines() if line.startswith("changed:")]


def test_second_run_restarts_nothing(rerun):
    assert rerun.pids_after == rerun.pids_before
    assert "0" not in rerun.pids_before.values()


@pytest.mark.parametrize("variable, value", [
    ("mysql_flavor", "oracle"),
    ("rabbitmq_amqp_port", "amqp"),
    ("docker_source", "snap"),
    ("nodejs_source", "brew"),
    ("airflow_worker_concurrency", "many"),
    ("cwl_airflow_jwt_algorithm", "none"),
])
def test_bad_variable_fails_before_any_role_runs(provisioned, testbed, variable, value):
    result = run_playbook(testbed.inventory, extra_vars={variable: value}, log=LOGS / f"bad-{variable}.log")
    assert result.returncode != 0
    assert variable in result.output
    assert result.stats["aio"]["changed"] == 0
    for role in ("mysql", "rabbitmq", "docker", "nodejs", "airflow", "cwl_airflow"):
        assert f"TASK [{role} :" not in result.output


def test_only_sshd_listens_beyond_loopback(host):
    exposed = [s for s in host.socket.get_listening_sockets()
               if not any(s.startswith(p) for p in ("tcp://127.", "udp://127.", "tcp://::1:", "udp://::1:", "unix://"))]
    assert sorted(exposed) == ["tcp://0.0.0.0:22", "tcp://:::22"]


def test_ansible_lint_production_profile():
    lint = subprocess.run([str(REPO / ".venv/bin/ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
                          cwd=REPO / "ansible", capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
