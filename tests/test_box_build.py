"""The box short of its full build (`make box` + `make box-test`): in CI, the Packer template
validates with Packer 1.6.6; in `make test-full` also, the base image boots and takes Vagrant's
user, and a box built from it by the real template (ansible provisioner, cleanup, vagrant
post-processor) with a one-task play has the libvirt and VirtualBox layouts and boots clean.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from testhosts.facts import DEBIAN
from testhosts.vm import VM, private_copy, vagrant_insecure_key

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = ROOT / "build/base/debian-12.qcow2"
VERSION = (ROOT / "packer/VERSION").read_text().strip()
ACCEL = os.environ.get("BOX_ACCEL", "tcg")  # KVM hangs on the CI machine
OVF_NS = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
          "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"}


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    return private_copy(vagrant_insecure_key(), tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def any_key(tmp_path_factory) -> Path:
    """A key for the template's variable where nothing logs in (Vagrant is not needed to validate)."""
    path = tmp_path_factory.mktemp("any-key") / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


def packer(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["packer", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PACKER_CACHE_DIR": str(ROOT / "build/packer_cache")})


def packer_vars(os_name: str, key: Path, **extra: str) -> list[str]:
    args = [f"-var-file=packer/{os_name}.pkrvars.hcl", f"-var=ssh_private_key_file={key}",
            f"-var=ansible_command={ROOT / '.venv/bin/ansible-playbook'}", f"-var=accelerator={ACCEL}"]
    return args + [f"-var={k}={v}" for k, v in extra.items()]


@pytest.mark.parametrize("os_name", ["debian-12", "ubuntu-24.04"])
def test_template_validates_with_packer_1_6(os_name, any_key, tmp_path):
    extra = {"output_dir": str(tmp_path / "box")}  # validate wants it absent
    if os_name.startswith("ubuntu"):  # the cloud image's SHA256SUMS cannot be fetched here
        extra["iso_checksum"] = "sha256:" + "0" * 64
    result = packer("validate", *packer_vars(os_name, any_key, **extra), "packer/box.pkr.hcl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert packer("version").stdout.startswith("Packer v1.6.")


def test_template_rejects_a_missing_variable():
    result = packer("validate", "-var-file=packer/debian-12.pkrvars.hcl", "packer/box.pkr.hcl")
    assert result.returncode != 0 and "ssh_private_key_file" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def base_vm(tmp_path_factory, key):
    assert BASE_IMAGE.exists(), "make base-image builds it (make test-full does)"
    tmp = tmp_path_factory.mktemp("base-vm")
    with VM(BASE_IMAGE, tmp, key, accel=ACCEL, memory=1024) as vm:
        vm.wait_ssh()
        yield vm


@pytest.mark.full
def test_base_image_boots_with_systemd_and_network(base_vm):
    assert base_vm.ssh("systemctl is-system-running --wait").stdout.strip() == "running"
    assert "inet 10.0.2." in base_vm.ssh("ip -4 addr show eth0").stdout  # DHCP from qemu's NAT
    assert base_vm.ssh(f"getent hosts {urllib.parse.urlsplit(DEBIAN['mirror']).hostname}").returncode == 0  # DNS
    assert "console=ttyS0" in base_vm.ssh("cat /proc/cmdline").stdout
    assert "login:" in base_vm.console_log.read_text(errors="replace")  # serial console


@pytest.mark.full
def test_base_image_has_the_vagrant_user(base_vm):
    assert base_vm.ssh("sudo -n id -u").stdout.strip() == "0"
    authorized = base_vm.ssh("cat ~/.ssh/authorized_keys").stdout.split()
    assert authorized[:2] == Path(f"{vagrant_insecure_key()}.pub").read_text().split()[:2]
    assert base_vm.ssh("stat -c %a ~/.ssh ~/.ssh/authorized_keys").stdout.split() == ["700", "600"]
    for tool in ("python3", "rsync"):  # Ansible; Vagrant's rsync synced folder
        assert base_vm.ssh(f"command -v {tool}").returncode == 0


@pytest.mark.full
def test_base_image_disk(base_vm):
    size_kib = int(base_vm.ssh("df --output=size -k / | tail -1").stdout)
    assert 18 * 2**20 < size_kib <= 20 * 2**20  # 20 GiB disk, one partition
    info = qemu_img_info(BASE_IMAGE)
    assert info["format"] == "qcow2" and info["actual-size"] < 1.5 * 2**30  # sparse


@pytest.fixture(scope="module")
def smoke_box(tmp_path_factory, key):
    """The real template, the base image and a short play instead of site.yml; with the
    Ubuntu build's cloud-init seed served as the Ubuntu build serves it."""
    out = tmp_path_factory.mktemp("box")
    ubuntu = (ROOT / "packer/ubuntu-24.04.pkrvars.hcl").read_text()
    seed = [f"-var={name}={re.search(name + r' *= *(.*)', ubuntu)[1].strip(chr(34))}"
            for name in ("http_directory", "qemuargs")]
    result = packer("build", "-force", "-color=false",
                    *packer_vars("debian-12", key, output_dir=str(out), playbook=str(ROOT / "tests/box/smoke.yml")),
                    *seed, "packer/box.pkr.hcl")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


def vagrant_box_add(box: Path, home: Path) -> Path:
    """Add the box as Vagrant does it (its own unpacking and checks); return its folder."""
    result = subprocess.run(["vagrant", "box", "add", "--name", "smoke", str(box)], capture_output=True, text=True,
                            env={**os.environ, "VAGRANT_HOME": str(home)}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = (home / "boxes/smoke/0").iterdir()
    return folder


def qemu_img_info(image: Path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", image],
                                     check=True, capture_output=True, text=True).stdout)


@pytest.mark.full
def test_libvirt_box_as_vagrant_adds_it(smoke_box, tmp_path):
    box = vagrant_box_add(smoke_box / f"cwl-airflow-debian-12-{VERSION}-libvirt.box", tmp_path)
    assert box.name == "libvirt"
    assert sorted(p.name for p in box.iterdir()) == ["Vagrantfile", "box.img", "metadata.json"]
    assert json.loads((box / "metadata.json").read_text()) == {"provider": "libvirt", "format": "qcow2",
                                                                "virtual_size": 20}
    assert qemu_img_info(box / "box.img")["virtual-size"] == 20 * 2**30
    assert "config.vm.provider :libvirt" in (box / "Vagrantfile").read_text()


@pytest.mark.full
def test_virtualbox_box_from_the_same_disk(smoke_box, tmp_path):
    disk = smoke_box / "debian-12" / f"cwl-airflow-debian-12-{VERSION}.qcow2"
    subprocess.run([ROOT / "packer/virtualbox-box.py", disk, tmp_path / "virtualbox.box"], check=True)
    box = vagrant_box_add(tmp_path / "virtualbox.box", tmp_path / "vagrant")
    assert box.name == "virtualbox"
    assert sorted(p.name for p in box.iterdir()) == ["Vagrantfile", "box-disk001.vmdk", "box.ovf", "metadata.json"]
    vmdk = qemu_img_info(box / "box-disk001.vmdk")
    assert vmdk["format"] == "vmdk" and vmdk["format-specific"]["data"]["create-type"] == "streamOptimized"
    ovf = ET.parse(box / "box.ovf").getroot()
    assert ovf.find("ovf:References/ovf:File", OVF_NS).get(f"{{{OVF_NS['ovf']}}}href") == "box-disk001.vmdk"
    disk_el = ovf.find("ovf:DiskSection/ovf:Disk", OVF_NS)
    assert int(disk_el.get(f"{{{OVF_NS['ovf']}}}capacity")) == vmdk["virtual-size"] == 20 * 2**30
    types = [i.findtext("rasd:ResourceType", namespaces=OVF_NS) for i in ovf.iter(f"{{{OVF_NS['ovf']}}}Item")]
    assert sorted(types) == ["10", "17", "20", "3", "4"]  # NIC, disk, SATA, CPU, memory


@pytest.mark.full
def test_box_boots_clean(smoke_box, key, tmp_path):
    disk = smoke_box / "debian-12" / f"cwl-airflow-debian-12-{VERSION}.qcow2"
    with VM(disk, tmp_path, key, accel=ACCEL, memory=1024) as vm:
        vm.wait_ssh()
        assert vm.ssh("cat /etc/box-smoke").stdout.strip() == "provisioned by ansible"
        assert vm.ssh("test -s /etc/machine-id").returncode == 0  # a new identity at first boot
        assert vm.ssh("ls /etc/ssh/ssh_host_ed25519_key").returncode == 0  # new host keys
        assert vm.ssh("ls /usr/local/share/ca-certificates").stdout.split() == []
        assert vm.ssh("test -e /etc/pip.conf").returncode == 1  # build-time trust gone
