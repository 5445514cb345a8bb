"""The built box (`make box-test`): its disk booted with qemu, copy-on-write and offline (qemu's
restricted network: only the forwarded ports reach it), as `vagrant up` boots it, reached over
ssh as vagrant with Vagrant's insecure key. The role tests that check a running appliance run
here too (imported below); the fixtures here stand in for the test hosts' ones."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import testinfra

from conftest import CWL, DAGS, put_file
from testhosts import Settings
from testhosts.airflow import AirflowClient
from testhosts.images import busybox_archive
from testhosts.vm import VM, private_copy, vagrant_insecure_key

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "build/box/box-test-figures.json"


@pytest.fixture(scope="session")
def box_disk(pytestconfig) -> Path:
    disk = Path(pytestconfig.getoption("--box-disk")).resolve()
    assert disk.exists(), f"{disk}: build it with `make box`"
    return disk


@pytest.fixture(scope="session")
def box_vm(box_disk, pytestconfig, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("box")
    vm = VM(box_disk, tmp, private_copy(vagrant_insecure_key(), tmp), accel=pytestconfig.getoption("--box-accel"), memory=4096,
            guest_ports=[8080, 5555, 15672], offline=True)
    with vm:
        figures = {"boot_to_ssh_s": round(vm.wait_ssh(900), 1)}
        try:  # the health endpoint needs no login
            AirflowClient(f"http://127.0.0.1:{vm.ports[8080]}", "", "").wait_healthy(900)
        except TimeoutError as e:
            pytest.fail(f"{e} after boot: {vm.console_tail()}")
        figures["boot_to_healthy_s"] = round(time.monotonic() - vm.started, 1)
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(figures) + "\n")
        yield vm


@pytest.fixture(scope="session")
def host(box_vm):
    """The booted box as root (testinfra runs every command with sudo, as vagrant)."""
    return testinfra.get_host("ssh://vm", ssh_config=str(box_vm.ssh_config), sudo=True)


@pytest.fixture(scope="session")
def vagrant(box_vm):
    """The booted box as the vagrant user."""
    return testinfra.get_host("ssh://vm", ssh_config=str(box_vm.ssh_config))


@pytest.fixture(scope="session")
def build_credentials(box_disk) -> Path:
    """The secrets the build generated (make box keeps them beside the boxes)."""
    return box_disk.parents[1] / "credentials"


@pytest.fixture(scope="session")
def airflow(box_vm, host, pytestconfig):
    password = json.loads(host.file("/var/lib/airflow/passwords.json").content_string)["admin"]
    slow = pytestconfig.getoption("--box-accel") == "tcg"  # tasks take 10x longer under software emulation
    client = AirflowClient(f"http://127.0.0.1:{box_vm.ports[8080]}", "admin", password, timeout=900 if slow else 180)
    client.wait_healthy()
    return client


@pytest.fixture(scope="session")
def smoke_dag(host, airflow) -> str:
    put_file(host, "/var/lib/airflow/dags/appliance_smoke.py", (DAGS / "appliance_smoke.py").read_bytes(),
             owner="airflow", mode="0640")
    airflow.wait_dag("appliance_smoke")
    return "appliance_smoke"


# --------------------------------------------------------------------------- the roles' checks
from test_airflow import (  # noqa: E402
    test_daemon_enabled_and_running_as_airflow,
    test_dag_runs_through_celery,
    test_secrets_not_readable_by_others,
    test_units_verify_clean,
)
from test_docker import test_daemon_options, test_engine_enabled_and_running  # noqa: E402
from test_mysql import test_no_anonymous_users_or_test_database  # noqa: E402
from test_mysql import test_server_enabled_and_running as test_mysql_enabled_and_running  # noqa: E402
from test_nodejs import test_node_evaluates_javascript  # noqa: E402
from test_rabbitmq import test_consumer_timeout_raised, test_management_plugin_answers, test_vhost_and_user  # noqa: E402
from test_rabbitmq import test_server_enabled_and_running as test_rabbitmq_enabled_and_running  # noqa: E402


# --------------------------------------------------------------------------- the box itself
def test_boots_to_a_clean_running_system(host, box_vm):
    assert host.run("systemctl is-system-running --wait").stdout.strip() == "running", \
        host.run("systemctl --failed --no-legend").stdout
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert len(machine_id) == 32 and machine_id != "uninitialized"  # its own identity
    assert host.file("/etc/ssh/ssh_host_ed25519_key").exists  # made at first boot


def test_vagrant_user_with_sudo_and_the_insecure_key(vagrant):
    assert vagrant.check_output("sudo -n id -u") == "0"
    public = Path(f"{vagrant_insecure_key()}.pub")
    assert public.read_text().split()[1] in vagrant.file("/home/vagrant/.ssh/authorized_keys").content_string


def test_every_secret_is_new_at_first_boot(host, build_credentials):
    assert host.service("airflow-new-secrets").is_enabled
    assert host.run("systemctl show -P Result airflow-new-secrets").stdout.strip() == "success"
    built = {p.stem: p.read_text().strip() for p in build_credentials.glob("*")}
    assert {"mysql-airflow", "rabbitmq-airflow", "airflow-admin", "airflow-fernet"} <= built.keys()
    config = host.check_output("cat /etc/airflow/credentials/*") + host.file("/var/lib/airflow/passwords.json").content_string
    assert [name for name, secret in built.items() if secret in config] == []
    assert host.run("rabbitmqctl authenticate_user airflow %s", built["rabbitmq-airflow"]).rc != 0


def test_only_sshd_and_the_forwarded_ports_listen_beyond_loopback(host):
    """packer/box-vars.yml: Vagrant forwards 8080, 5555 and 15672 to the VM's own address."""
    exposed = [s for s in host.socket.get_listening_sockets()
               if not any(s.startswith(p) for p in ("tcp://127.", "udp://127.", "tcp://::1:", "udp://::1:", "unix://"))]
    assert sorted(exposed) == ["tcp://0.0.0.0:15672", "tcp://0.0.0.0:22", "tcp://0.0.0.0:5555", "tcp://0.0.0.0:8080",
                               "tcp://:::22", "udp://0.0.0.0:68"]  # 68: the DHCP client


def test_forwarded_ports_answer(box_vm):
    """As Vagrant forwards them: the UI/API, Flower, RabbitMQ's management UI."""
    for port in (8080, 5555, 15672):
        with urllib.request.urlopen(f"http://127.0.0.1:{box_vm.ports[port]}/", timeout=30) as response:
            assert response.status == 200, port


def test_no_build_time_leftovers(host):
    assert host.run("ls /usr/local/share/ca-certificates").stdout.split() == []
    assert not host.file("/etc/pip.conf").exists
    assert host.run("ls /var/lib/apt/lists").stdout.split() in ([], ["lock"], ["lock", "partial"], ["partial"])


def test_offline_and_runs_a_workflow_with_a_docker_step(host, vagrant, box_vm, tmp_path):
    """The VM has no network but ssh and the forwarded ports: no download happens at run time."""
    assert host.run("timeout 10 getent hosts pypi.org || timeout 10 bash -c '</dev/tcp/151.101.0.223/443'").rc != 0
    # the test image (busybox) comes in over ssh, as a user would bring their own
    archive = busybox_archive(Settings.from_env())
    subprocess.run(["scp", "-F", str(box_vm.ssh_config), str(archive), "vm:/tmp/busybox.tar"], check=True)
    host.run_expect([0], "docker load -i /tmp/busybox.tar")
    host.run_expect([0], "install -d -o vagrant /home/vagrant/workflows")
    put_file(host, "/home/vagrant/workflows/three-step.cwl", (CWL / "three-step.cwl").read_bytes(), owner="vagrant")
    put_file(host, "/home/vagrant/workflows/job.json", b'{"name": "box"}', owner="vagrant")
    result = host.run("cd /home/vagrant/workflows && cwl-airflow run --quiet --outdir out three-step.cwl job.json")
    assert result.rc == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout)
    assert host.file(outputs["shouted"]["path"]).content_string == "HELLO BOX\n"


# --------------------------------------------------------------------------- vagrant up
def test_vagrant_up_with_libvirt(box_disk, pytestconfig, tmp_path):
    """The libvirt box with the project's Vagrantfile, as a user runs it: where libvirtd runs."""
    if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode != 0:
        pytest.skip("libvirtd is not running (systemctl start libvirtd; `libvirtd -d` where PID 1 is not systemd)")
    name = "cwl-airflow-box-test"
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "home"), "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
           "CWL_AIRFLOW_BOX": name, "CWL_AIRFLOW_WORKFLOWS": str(tmp_path / "workflows"),
           "CWL_AIRFLOW_LIBVIRT_DRIVER": "kvm" if pytestconfig.getoption("--box-accel") == "kvm" else "qemu"}

    def vagrant(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["vagrant", *args], cwd=ROOT / "vagrant", env=env, capture_output=True, text=True,
                              timeout=1800)

    added = vagrant("box", "add", "--name", name, str(box_disk.parents[1] / f"{box_disk.stem}-libvirt.box"))
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        started = time.monotonic()
        up = vagrant("up", "--provider=libvirt")
        up_s = time.monotonic() - started
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        assert "http://localhost:8080" in up.stdout  # the Vagrantfile's message
        (tmp_path / "workflows/hello.txt").write_text("synced\n")
        assert vagrant("rsync").returncode == 0
        assert vagrant("ssh", "-c", "cat workflows/hello.txt").stdout.strip() == "synced"
        AirflowClient("http://127.0.0.1:8080", "", "").wait_healthy(900)  # the forwarded port on the host's localhost
        figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        figures.update(vagrant_up_s=round(up_s, 1), vagrant_up_to_healthy_s=round(time.monotonic() - started, 1))
        FIGURES.write_text(json.dumps(figures) + "\n")
    finally:
        vagrant("destroy", "-f")
        vagrant("box", "remove", "--force", name)
        # vagrant-libvirt leaves the box's image in the storage pool
        volumes = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", "default", "--name"],
                                 capture_output=True, text=True).stdout.split()
        for volume in (v for v in volumes if v.startswith(f"{name}_vagrant_box_image_")):
            subprocess.run(["virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default", volume])
