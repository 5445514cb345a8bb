"""Two machines: a controller (database, broker, Airflow control daemons) and a Celery worker
on another host, configured only through the roles' variables."""

import pytest
import testinfra

from conftest import DAGS, LOGS, SECRETS, put_file, tcp_open
from testhosts import Testbed
from testhosts.airflow import AirflowClient
from testhosts.playbook import run_playbook


@pytest.fixture(scope="module")
def cluster(settings, pytestconfig):
    keep = pytestconfig.getoption("--keep-testbed")
    tb = Testbed("cluster", settings)
    if not keep:
        tb.down()
    try:
        tb.up(["ctl", "wrk"], groups={"appliance": ["ctl", "wrk"]})
        ctl = tb.host("ctl")
        network = f"{settings.network.network_address}".rsplit(".", 1)[0] + ".%"
        cluster_vars = {
            "mysql_bind_address": "0.0.0.0",
            "mysql_user_hosts": ["localhost", "127.0.0.1", network],
            "rabbitmq_bind_address": "0.0.0.0",
            "airflow_database_host": str(ctl.ip),
            "airflow_broker_host": str(ctl.ip),
            "airflow_api_host": "0.0.0.0",
            "airflow_api_base_url": f"http://{ctl.ip}:8080",
            "airflow_worker_hosts": ["wrk"],
            "airflow_log_server_enabled": True,
        }
        result = run_playbook(tb.inventory, extra_vars=cluster_vars, log=LOGS / "cluster-site.log")
        if result.returncode != 0:
            pytest.fail(f"site.yml on the cluster failed:\n{result.output[-4000:]}", pytrace=False)
        yield tb
    finally:
        if not keep:
            tb.down()


def hosts(tb: Testbed):
    return (testinfra.get_host(f"ssh://{name}", ssh_config=str(tb.ssh_config)) for name in ("ctl", "wrk"))


def test_daemons_split_between_controller_and_worker(cluster):
    ctl, wrk = hosts(cluster)
    for daemon in ("api-server", "scheduler", "dag-processor", "triggerer", "flower"):
        assert ctl.service(f"airflow-{daemon}").is_running
        assert not wrk.service(f"airflow-{daemon}").is_enabled
    assert wrk.service("airflow-worker").is_running
    assert not ctl.service("airflow-worker").is_enabled
    assert not wrk.service("mariadb").is_running and not wrk.service("rabbitmq-server").is_running


def test_a_worker_machine_keeps_only_the_secrets_of_its_worker(cluster):
    """No Fernet key or JWT secret, nor Flower's login, where only a worker runs (the API secret
    key: its log server checks the API server's requests with it)."""
    ctl, wrk = hosts(cluster)
    assert wrk.check_output("ls %s", SECRETS).split() == ["api_secret_key", "broker_url", "result_backend",
                                                         "sql_alchemy_conn"]
    assert len(ctl.check_output("ls %s", SECRETS).split()) == 7


def test_database_and_broker_open_to_the_cluster_as_configured(cluster):
    ctl, wrk = hosts(cluster)
    assert tcp_open(wrk, "ctl", 3306)
    assert tcp_open(wrk, "ctl", 5672)
    assert not tcp_open(wrk, "ctl", 4369), "epmd stays on loopback: RabbitMQ itself is not clustered"


def test_dag_runs_on_the_worker_machine(cluster):
    ctl, wrk = hosts(cluster)
    for h in (ctl, wrk):  # workers parse the DAG file too: a cluster shares or syncs the dags folder
        put_file(h, "/var/lib/airflow/dags/appliance_smoke.py", (DAGS / "appliance_smoke.py").read_bytes(),
                 owner="airflow", mode="0640")
    password = (cluster.dir / "credentials/airflow-admin.password").read_text().strip()
    with cluster.forward("ctl", 8080) as port:
        client = AirflowClient(f"http://127.0.0.1:{port}", "admin", password)
        client.wait_healthy()
        client.wait_dag("appliance_smoke")
        run_id, state = client.run("appliance_smoke", timeout=300)
        assert state == "success"
        logs = client.get(f"/api/v2/dags/appliance_smoke/dagRuns/{run_id}/taskInstances/hello/logs/1?full_content=true")
    assert "hello from wrk" in str(logs), "the task log (served by the worker's log server) shows where it ran"
    assert run_id in wrk.check_output("journalctl -u airflow-worker --no-pager -o cat")
