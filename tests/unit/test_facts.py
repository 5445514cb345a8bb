"""One source per fact: ansible/group_vars/all/appliance.yml. What cannot read it (the roles'
defaults, the cwl-airflow package, the Vagrantfiles, Packer's variables, the box's play
variables) says the same."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import yaml

from cwl_airflow import cli, up
from testhosts import facts

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "ansible/roles"


def text(path: str) -> str:
    return (REPO / path).read_text()


def role_defaults() -> dict:
    merged = {}
    for defaults in sorted(ROLES.glob("*/defaults/main.yml")):
        merged.update(yaml.safe_load(defaults.read_text()) or {})
    return merged


def test_the_roles_default_to_the_published_ports():
    defaults = role_defaults()
    assert {var: defaults.get(var) for var in facts.PUBLISHED_PORTS} == facts.PUBLISHED_PORTS
    assert urllib.parse.urlsplit(defaults["cwl_airflow_api_url"]).port == facts.API_PORT
    box = yaml.safe_load(text("packer/box-vars.yml"))
    assert urllib.parse.urlsplit(box["airflow_api_base_url"]).port == facts.API_PORT


def test_the_bundle_tunes_airflow_as_the_role_does():
    defaults = role_defaults()
    assert up.TUNING == {
        "scheduler": {"scheduler_idle_sleep_time": str(defaults["airflow_scheduler_idle_sleep_time"])},
        "dag_processor": {"min_file_process_interval": str(defaults["airflow_dag_min_file_process_interval"])},
        "workers": {"min_heartbeat_interval": str(defaults["airflow_worker_min_heartbeat_interval"])},
    }


def test_the_client_and_the_bundle_default_to_the_api_port():
    assert cli.DEFAULT_API_PORT == facts.API_PORT


def test_the_vagrantfile_forwards_the_published_ports():
    ports = re.search(r"^PORTS = \{(.*)\}$", text("vagrant/Vagrantfile"), re.M)[1]
    assert sorted(int(p) for p in re.findall(r"(\d+) =>", ports)) == sorted(facts.PUBLISHED_PORTS.values())


def test_every_vm_size_is_the_facts_one():
    vagrantfile = text("vagrant/Vagrantfile")
    assert re.search(r'"CWL_AIRFLOW_CPUS", "(\d+)"', vagrantfile)[1] == str(facts.VM["cpus"])
    assert re.search(r'"CWL_AIRFLOW_MEMORY", "(\d+)"', vagrantfile)[1] == str(facts.VM["memory"])
    box_vagrantfile = text("packer/box.Vagrantfile")
    assert set(re.findall(r"\.cpus = (\d+)", box_vagrantfile)) == {str(facts.VM["cpus"])}
    assert set(re.findall(r"\.memory = (\d+)", box_vagrantfile)) == {str(facts.VM["memory"])}
    template = text("packer/box.pkr.hcl")
    for name in ("cpus", "memory"):
        block = re.search(rf'variable "{name}" \{{(.*?)\n\}}', template, re.S)[1]
        assert re.search(r"default\s*=\s*(\d+)", block)[1] == str(facts.VM[name]), name


def test_the_daemons_are_the_airflow_roles_units():
    units = yaml.safe_load((ROLES / "airflow/vars/main.yml").read_text())["__airflow_daemons"]
    assert sorted(units) == sorted(facts.DAEMONS)
    assert set(up.DAEMONS) <= set(facts.DAEMONS)  # the bundle's `up`: no Celery


def test_debian_releases_and_mirrors_are_named_by_the_facts_alone():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    named = [path for path in tracked.decode().split("\0") if path and (REPO / path).is_file()
             and facts.DEBIAN["mirror"] in (REPO / path).read_text(errors="replace")]
    assert named == ["ansible/group_vars/all/appliance.yml"]
    fact = subprocess.run([sys.executable, "scripts/fact.py", "appliance_debian.suite"], cwd=REPO, capture_output=True,
                          text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert fact.stdout == f"{facts.DEBIAN['suite']}\n"


def test_packer_names_the_portable_artifacts_as_the_harness_does():
    template = text("packer/portable.pkr.hcl")
    names = {key: value.replace("${local.version}", facts.VERSION)
             for key, value in re.findall(r'^  (name|appimage_name) += "(.*)"$', template, re.M)}
    assert names == {"name": facts.TARBALL, "appimage_name": facts.APPIMAGE.removesuffix(".AppImage")}
