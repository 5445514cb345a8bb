"""The cwl_airflow role installs the version the package declares."""

from pathlib import Path

import yaml

import cwl_airflow

ROLE = Path(__file__).resolve().parents[2] / "ansible/roles/cwl_airflow"


def test_role_installs_the_package_version():
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    assert defaults["cwl_airflow_version"] == cwl_airflow.__version__


def test_pins_cover_cwltool():
    pins = (ROLE / "files/constraints-cwl-airflow.txt").read_text()
    assert any(line.startswith("cwltool==") for line in pins.splitlines())
