"""The harness's own logic, without booting anything (no root needed)."""

import io
import ipaddress
import json
import tarfile
from pathlib import Path

import pytest

from testhosts import network
from testhosts.images import write_archive
from testhosts.playbook import parse_recap
from testhosts.settings import Settings


def test_settings_from_env(tmp_path):
    s = Settings.from_env({"TESTHOSTS_CACHE": str(tmp_path), "TESTHOSTS_NET": "10.9.8.0/24",
                           "TESTHOSTS_EXTRA_CA_DIR": ""})
    assert s.cache_dir == tmp_path
    assert s.gateway == ipaddress.IPv4Address("10.9.8.1")
    assert s.extra_cas() == []


def test_settings_reject_long_bridge_name():
    with pytest.raises(ValueError, match="TESTHOSTS_BRIDGE"):
        Settings.from_env({"TESTHOSTS_BRIDGE": "a-very-long-bridge-name"})


def test_extra_cas_found(tmp_path):
    (tmp_path / "proxy.crt").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert Settings.from_env({"TESTHOSTS_EXTRA_CA_DIR": str(tmp_path)}).extra_cas() == [tmp_path / "proxy.crt"]


def test_firewall_lets_hosts_out_on_dns_http_https_only():
    rules = network.ruleset(Settings.from_env({"TESTHOSTS_NET": "10.9.8.0/24", "TESTHOSTS_BRIDGE": "br9"}))
    assert 'iifname "br9" tcp dport { 53, 80, 443 } accept' in rules
    assert 'iifname "br9" drop' in rules
    assert 'oifname "br9" drop' in rules
    assert 'ip saddr 10.9.8.0/24 oifname != "br9" masquerade' in rules


RECAP = """
PLAY RECAP *********************************************************************
aio                        : ok=31   changed=3    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0
peer                       : ok=2    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_parse_recap():
    stats = parse_recap("TASK [x]\nchanged: [aio]\n" + RECAP)
    assert stats["aio"]["changed"] == 3
    assert stats["peer"]["unreachable"] == 1
    assert parse_recap("no recap at all") == {}


def test_image_archive_is_what_docker_load_reads(tmp_path: Path):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info, io.BytesIO(b""))
    image_id = write_archive(tmp_path / "img.tar", layer.getvalue(), "x/y:z", cmd=["sh"])
    with tarfile.open(tmp_path / "img.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest[0]["Config"]))
        assert manifest[0]["RepoTags"] == ["x/y:z"]
        assert manifest[0]["Config"] == f"{image_id}.json"
        assert tar.extractfile(manifest[0]["Layers"][0]).read() == layer.getvalue()
    assert config["rootfs"]["diff_ids"][0].startswith("sha256:")
    assert write_archive(tmp_path / "again.tar", layer.getvalue(), "x/y:z", cmd=["sh"]) == image_id
