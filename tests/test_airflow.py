"""The airflow role: Airflow 3 with Celery on MariaDB and RabbitMQ, every daemon under systemd."""

import json
import time
import urllib.error
import urllib.parse

import pytest

from conftest import AIRFLOW_DAEMONS, CLEANUP_INTERVAL, DAGS, LOGS, SECRETS, put_file, secret, tcp_open
from testhosts.airflow import AirflowClient
from testhosts.playbook import run_playbook


def units(host) -> dict[str, str]:
    return {d: host.check_output("systemctl is-active airflow-%s", d) if host.run(
        "systemctl is-active airflow-%s", d).rc == 0 else "inactive" for d in AIRFLOW_DAEMONS}


@pytest.mark.parametrize("daemon", AIRFLOW_DAEMONS)
def test_daemon_enabled_and_running_as_airflow(host, daemon):
    service = host.service(f"airflow-{daemon}")
    assert service.is_enabled
    assert service.is_running
    pid = host.check_output("systemctl show -P MainPID airflow-%s", daemon)
    assert host.check_output("ps -o user= -p %s", pid) == "airflow"


def test_no_daemon_is_in_group_docker(host):
    """The docker socket is root: no process of user airflow may reach it (CWL steps run in
    the step service and reach Docker through its proxy)."""
    docker = host.check_output("getent group docker").split(":")[2]
    assert "docker" not in host.check_output("id -nG airflow").split()
    for unit in [f"airflow-{daemon}" for daemon in AIRFLOW_DAEMONS] + ["cwl-airflow-step"]:
        pid = host.check_output("systemctl show -P MainPID %s", unit)
        groups = host.check_output("grep ^Groups: /proc/%s/status", pid).split()[1:]
        assert docker not in groups, unit
    assert host.run("sudo -u airflow docker ps").rc != 0


def test_units_verify_clean(host):
    for daemon in AIRFLOW_DAEMONS:
        check = host.run("systemd-analyze verify /etc/systemd/system/airflow-%s.service", daemon)
        assert check.rc == 0 and check.stderr.strip() == "", check.stderr


def test_health_endpoints(host, airflow):
    health = airflow.health()
    assert {part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")} \
        == dict.fromkeys(("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy")
    assert host.run("python3 -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:8974/health')\"").rc == 0


def test_flower_needs_its_login(host):
    """Flower shows every task with its arguments (execution-API tokens included)."""
    login = secret(host, "flower_basic_auth")
    user, password = login.split(":")
    assert len(password) >= 18

    def status(credentials: str) -> str:
        script = ("import base64, sys, urllib.error, urllib.request as u\n"
                  "r = u.Request('http://127.0.0.1:5555/api/workers')\n"
                  "if sys.argv[1]: r.add_header('Authorization', 'Basic ' + base64.b64encode(sys.argv[1].encode()).decode())\n"
                  "try: print(u.urlopen(r, timeout=30).status)\n"
                  "except urllib.error.HTTPError as e: print(e.code)\n")
        return host.check_output("python3 -c %s %s", script, credentials)

    assert status("") == "401"
    assert status(f"{user}:wrong-password") == "401"
    assert status(login) == "200"


def test_ui_api_and_flower_on_loopback_only(host, peer):
    for port in (8080, 5555, 8974):
        assert [s for s in host.socket.get_listening_sockets() if s.endswith(f":{port}")] == [f"tcp://127.0.0.1:{port}"]
        assert not tcp_open(peer, "aio", port)


def test_admin_password_is_required(airflow):
    with pytest.raises(urllib.error.HTTPError) as denied:
        AirflowClient(airflow.url, "admin", "wrong-password").token()
    assert denied.value.code in (401, 403)
    assert airflow.token()


def stored_secrets(host) -> dict[str, str]:
    return {name: secret(host, name) for name in host.check_output("ls %s", SECRETS).split()}


def test_secrets_reach_each_daemon_alone(host):
    """The secrets are root's files, each given only to the units that use it: user airflow
    cannot read them, no configuration file and no daemon's environment holds one, and a
    daemon cannot read another's (the API server has no broker password, for one)."""
    store = host.file(SECRETS)
    assert (store.user, store.group, store.mode) == ("root", "root", 0o700)
    secrets = stored_secrets(host)
    assert set(secrets) == {"sql_alchemy_conn", "result_backend", "broker_url", "fernet_key", "jwt_secret",
                            "api_secret_key", "flower_basic_auth"}
    for name in secrets:
        stored = host.file(f"{SECRETS}/{name}")
        assert (stored.user, stored.group, stored.mode) == ("root", "root", 0o600), name
    assert host.run("setpriv --reuid=airflow --regid=airflow --clear-groups cat %s/fernet_key", SECRETS).rc != 0
    config = host.file("/etc/airflow/airflow.env").content_string + host.file("/etc/airflow/cwl-airflow.env").content_string
    assert [name for name, value in secrets.items() if value in config] == []
    for pid in host.check_output("pgrep -u airflow").split():  # every daemon and its children
        environ = host.run("cat /proc/%s/environ", pid).stdout  # "" if it just ended
        assert [name for name, value in secrets.items() if value in environ] == [], host.run("ps -fp %s", pid).stdout
    api = host.check_output("systemctl show -P MainPID airflow-api-server")

    def api_reads(path: str) -> bool:
        return host.run("nsenter -t %s -m setpriv --reuid=airflow --regid=airflow --clear-groups cat %s",
                        api, path).rc == 0

    assert api_reads("/run/credentials/airflow-api-server.service/jwt_secret")
    assert not api_reads("/run/credentials/airflow-api-server.service/broker_url")
    assert not api_reads("/run/credentials/airflow-scheduler.service/broker_url")
    assert not api_reads("/run/credentials/airflow-flower.service/flower_basic_auth")
    passwords = host.file("/var/lib/airflow/passwords.json")
    assert (passwords.user, passwords.mode) == ("airflow", 0o600)
    assert host.file("/var/lib/airflow").mode == 0o750
    assert host.run("setpriv --reuid=nobody --regid=nogroup --clear-groups cat /var/lib/airflow/passwords.json").rc != 0


def test_admin_wrapper_reads_the_configuration(host):
    """`sudo airflow ...`: root's, as it reads the secrets; Airflow itself runs as airflow."""
    assert host.check_output("airflow config get-value core executor") == "CeleryExecutor"
    assert host.run_expect([0], "airflow db check").rc == 0
    refused = host.run("sudo -u airflow airflow config get-value core executor")
    assert refused.rc == 1 and "run it as root" in refused.stderr


def test_installed_packages_check_sees_versions_and_extras(host):
    """files/requirements-met.py: the play runs pip only when it exits non-zero."""
    python = "/opt/airflow/venv/bin/python"
    check = f"{python} /opt/airflow/requirements-met.py"
    version = host.check_output(f"{python} -c 'import airflow; print(airflow.__version__)'")
    assert host.run(f"{check} 'apache-airflow[celery,mysql]=={version}' cwl-airflow").rc == 0
    unmet = host.run(f"{check} 'apache-airflow[celery,amazon]=={version}' 'apache-airflow<3' no-such-package")
    assert unmet.rc == 1
    assert unmet.stdout.split("\n")[1:] == ["apache-airflow<3", "no-such-package", ""]
    assert unmet.stdout.startswith("apache-airflow-providers-amazon")


def test_dag_runs_through_celery(host, airflow, smoke_dag):
    run_id, state = airflow.run(smoke_dag)
    assert state == "success"
    worker_log = host.check_output("journalctl -u airflow-worker --no-pager -o cat")
    assert run_id in worker_log, "the Celery worker's log does not mention the run"
    assert "execute_workload" in worker_log


def test_task_log_written_to_log_folder(host, airflow, smoke_dag):
    run_id, state = airflow.run(smoke_dag)
    assert state == "success"
    logs = host.check_output("grep -rl 'hello from aio' /var/lib/airflow/logs/dag_id=appliance_smoke/run_id=%s", run_id)
    assert logs


def test_scheduler_survives_asset_cleanup_on_mariadb(host, airflow):
    """A DAG declares an asset; removing the DAG orphans it; the scheduler's cleanup then
    deletes it from asset_active (the statement that crashed on MariaDB) and lives on."""
    def active_assets() -> int:
        return int(host.check_output("mysql -N -B -e \"SELECT COUNT(*) FROM airflow.asset_active "
                                     "WHERE name='appliance-test-asset'\""))
    restarts = host.check_output("systemctl show -P NRestarts airflow-scheduler")
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    put_file(host, "/var/lib/airflow/dags/appliance_asset.py", (DAGS / "appliance_asset.py").read_bytes(),
             owner="airflow", mode="0640")
    airflow.wait_dag("appliance_asset")
    deadline = time.monotonic() + 120
    while active_assets() == 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert active_assets() == 1, "the asset never became active"
    host.run_expect([0], "rm /var/lib/airflow/dags/appliance_asset.py")
    deadline = time.monotonic() + 240
    while active_assets() == 1 and time.monotonic() < deadline:
        time.sleep(5)
    assert active_assets() == 0, "the orphaned asset was not cleaned up"
    time.sleep(CLEANUP_INTERVAL + 10)  # the next cleanup, and time for systemd to restart a crashed scheduler
    assert host.check_output("systemctl show -P NRestarts airflow-scheduler") == restarts
    assert host.service("airflow-scheduler").is_running
    journal = host.check_output("journalctl -u airflow-scheduler --no-pager -o cat --since %s", since)
    assert "Traceback" not in journal


def wait_active(host, daemon: str, old_pid: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = host.check_output("systemctl show -P MainPID airflow-%s", daemon)
        if pid not in ("0", old_pid) and host.run("systemctl is-active airflow-%s", daemon).rc == 0:
            return pid
        time.sleep(1)
    raise TimeoutError(f"airflow-{daemon} not restarted after {timeout}s")


@pytest.mark.disruptive
@pytest.mark.parametrize("daemon", ["scheduler", "worker"])
def test_killed_daemon_comes_back(host, airflow, smoke_dag, daemon):
    pid = host.check_output("systemctl show -P MainPID airflow-%s", daemon)
    host.run_expect([0], "kill -9 %s", pid)
    wait_active(host, daemon, pid)
    airflow.wait_healthy()
    assert airflow.run(smoke_dag, timeout=240)[1] == "success"


@pytest.mark.disruptive
@pytest.mark.parametrize("service", ["mariadb", "rabbitmq-server"])
def test_run_succeeds_after_backend_restart(host, airflow, smoke_dag, service):
    host.run_expect([0], "systemctl restart %s", service)
    airflow.wait_healthy()
    assert airflow.run(smoke_dag, timeout=240)[1] == "success"


@pytest.mark.disruptive
def test_target_stops_and_starts_every_daemon(host, airflow, smoke_dag):
    host.run_expect([0], "systemctl stop airflow.target")
    assert set(units(host).values()) == {"inactive"}
    host.run_expect([0], "systemctl start airflow.target")
    assert set(units(host).values()) == {"active"}
    airflow.wait_healthy()
    assert airflow.run(smoke_dag, timeout=240)[1] == "success"


@pytest.mark.disruptive
def test_new_secrets_replace_every_secret(host, testbed, airflow, smoke_dag, credentials):
    """What every box does at its first boot (airflow-new-secrets.service), here by hand; then
    the play puts the inventory's secrets back."""
    assert host.service("airflow-new-secrets").is_enabled
    assert "ConditionFirstBoot=yes" in host.file("/etc/systemd/system/airflow-new-secrets.service").content_string
    old_secrets = stored_secrets(host)
    old = {name: (credentials / f"{name}.password").read_text().strip()
           for name in ("mysql-airflow", "rabbitmq-airflow", "airflow-admin")}
    host.run_expect([0], "systemctl stop airflow.target cwl-airflow-reporter")
    try:
        host.run_expect([0], "/usr/local/sbin/airflow-new-secrets")
        host.run_expect([0], "systemctl start airflow.target cwl-airflow-reporter")
        new_secrets = stored_secrets(host)
        assert [name for name in old_secrets if new_secrets[name] == old_secrets[name]] == []
        assert {host.file(f"{SECRETS}/{name}").mode for name in new_secrets} == {0o600}
        assert host.run("mysql -u airflow -p%s -h 127.0.0.1 -e 'SELECT 1'", old["mysql-airflow"]).rc != 0
        assert host.run("rabbitmqctl authenticate_user airflow %s", old["rabbitmq-airflow"]).rc != 0
        passwords = host.file("/var/lib/airflow/passwords.json")
        assert (passwords.user, passwords.mode) == ("airflow", 0o600)
        admin = json.loads(passwords.content_string)["admin"]
        assert admin != old["airflow-admin"]
        new_passwords = [urllib.parse.urlsplit(new_secrets[name]).password for name in ("sql_alchemy_conn", "broker_url")]
        new_passwords += [new_secrets["flower_basic_auth"].split(":", 1)[1], admin]
        # rabbitmqctl took a password beginning with "-" for an option (CI, 2026-12-07)
        assert all(password.isascii() and password.isalnum() and len(password) >= 24
                   for password in new_passwords), new_passwords
        renewed = AirflowClient(airflow.url, "admin", admin)
        renewed.wait_healthy()
        with pytest.raises(urllib.error.HTTPError):
            AirflowClient(airflow.url, "admin", old["airflow-admin"]).token()
        assert renewed.run(smoke_dag, timeout=240)[1] == "success"  # database, broker, workers
    finally:
        result = run_playbook(testbed.inventory, log=LOGS / "site-after-new-secrets.log")
    assert result.returncode == 0, result.output[-3000:]
    assert stored_secrets(host) == old_secrets
    airflow.wait_healthy()
    assert airflow.run(smoke_dag, timeout=240)[1] == "success"
