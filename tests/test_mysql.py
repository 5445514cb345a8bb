"""The mysql role on a Debian 12 host: MariaDB."""

import pytest

from conftest import tcp_open


def sql(host, password: str, query: str, user: str = "airflow"):
    return host.run("MYSQL_PWD=%s mysql --protocol=tcp -h 127.0.0.1 -u %s -N -B -e %s", password, user, query)


@pytest.fixture(scope="module")
def password(credentials):
    return (credentials / "mysql-airflow.password").read_text().strip()


def test_server_enabled_and_running(host):
    service = host.service("mariadb")
    assert service.is_enabled
    assert service.is_running


def test_listens_on_loopback_only(host, peer):
    assert host.socket("tcp://127.0.0.1:3306").is_listening
    assert not host.socket("tcp://0.0.0.0:3306").is_listening
    assert not host.socket("tcp://:::3306").is_listening
    assert tcp_open(peer, "aio", 22), "the peer must reach the appliance at all for the next check to mean something"
    assert not tcp_open(peer, "aio", 3306)


def test_generated_password_stored_privately(credentials, password):
    assert len(password) == 32
    assert (credentials / "mysql-airflow.password").stat().st_mode & 0o777 == 0o600
    assert credentials.stat().st_mode & 0o777 == 0o700


def test_password_never_printed(provisioned, rerun, password):
    assert password not in provisioned.output
    assert password not in rerun.result.output


def test_user_logs_in_with_generated_password_only(host, password):
    assert sql(host, password, "SELECT 6*7").stdout.strip() == "42"
    assert sql(host, password + "x", "SELECT 1").rc != 0


def test_database_charset_and_collation(host, password):
    row = sql(host, password, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                              "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='airflow'")
    assert row.stdout.split() == ["utf8mb4", "utf8mb4_unicode_ci"]


def test_user_owns_its_database_only(host, password):
    assert sql(host, password, "CREATE TABLE airflow.probe (id INT PRIMARY KEY); DROP TABLE airflow.probe").rc == 0
    assert sql(host, password, "CREATE DATABASE other").rc != 0


def test_explicit_defaults_for_timestamp(host, password):
    assert sql(host, password, "SELECT @@explicit_defaults_for_timestamp").stdout.strip() == "1"


def test_no_anonymous_users_or_test_database(host):
    assert host.check_output("mysql -N -B -e \"SELECT COUNT(*) FROM mysql.user WHERE user=''\"") == "0"
    assert "test" not in host.check_output("mysql -N -B -e 'SHOW DATABASES'").split()
