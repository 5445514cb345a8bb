"""The rabbitmq role: broker bound to localhost, one vhost and user, no guest."""

import json

import pytest

from conftest import tcp_open


@pytest.fixture(scope="module")
def password(credentials):
    return (credentials / "rabbitmq-airflow.password").read_text().strip()


def ctl(host, *args: str):
    return json.loads(host.check_output("rabbitmqctl -q --formatter json " + " ".join(args)))


def test_server_enabled_and_running(host):
    service = host.service("rabbitmq-server")
    assert service.is_enabled
    assert service.is_running


@pytest.mark.parametrize("port", [5672, 15672, 4369, 25672])
def test_every_port_on_loopback_only(host, peer, port):
    """AMQP, management, epmd and Erlang distribution."""
    listeners = [s for s in host.socket.get_listening_sockets() if s.endswith(f":{port}")]
    assert listeners == [f"tcp://127.0.0.1:{port}"]
    assert not tcp_open(peer, "aio", port)


def test_vhost_and_user(host):
    assert "airflow" in [v["name"] for v in ctl(host, "list_vhosts")]
    users = [u["user"] for u in ctl(host, "list_users")]
    assert "airflow" in users
    assert "guest" not in users
    permissions = ctl(host, "list_permissions", "-p", "airflow")
    assert {"user": "airflow", "configure": ".*", "write": ".*", "read": ".*"} in permissions


def test_user_authenticates_with_generated_password_only(host, password, provisioned):
    assert host.run("rabbitmqctl authenticate_user airflow %s", password).rc == 0
    assert host.run("rabbitmqctl authenticate_user airflow %s", password + "x").rc != 0
    assert password not in provisioned.output


def test_management_plugin_answers(host):
    assert host.check_output("rabbitmq-plugins -q list --enabled --minimal").split() == ["rabbitmq_management"]
    assert host.run("python3 -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:15672/')\"").rc == 0


def test_consumer_timeout_raised(host):
    assert host.check_output("rabbitmqctl eval 'application:get_env(rabbit, consumer_timeout).'") == "{ok,604800000}"


@pytest.mark.disruptive
def test_a_first_boot_gives_a_new_erlang_cookie(host, airflow, smoke_dag):
    """What every box does at its first boot (rabbitmq-new-cookie.service), here by hand."""
    unit = host.file("/etc/systemd/system/rabbitmq-new-cookie.service").content_string
    assert "ConditionFirstBoot=yes" in unit and "Before=rabbitmq-server.service" in unit
    assert host.service("rabbitmq-new-cookie").is_enabled
    old = host.check_output("cat /var/lib/rabbitmq/.erlang.cookie")
    host.run_expect([0], "systemctl stop rabbitmq-server && /usr/local/sbin/rabbitmq-new-cookie "
                         "&& systemctl start rabbitmq-server")
    new = host.check_output("cat /var/lib/rabbitmq/.erlang.cookie")
    assert new != old and len(new) == 32 and new.isalpha()
    cookie = host.file("/var/lib/rabbitmq/.erlang.cookie")
    assert (cookie.user, cookie.group, cookie.mode) == ("rabbitmq", "rabbitmq", 0o400)
    host.run_expect([0], "rabbitmqctl -q status")  # the CLI uses the node's new cookie
    assert airflow.run(smoke_dag, timeout=240)[1] == "success"  # the broker works for Celery
