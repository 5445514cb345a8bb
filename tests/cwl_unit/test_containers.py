"""Which container engine runs the steps of `cwl-airflow up` (the portable bundle), and what a
step that requires a container meets without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cwl_airflow import steps, up
from cwl_airflow.config import Settings
from cwl_airflow.workflow import CWLError, encode

TOOL = """cwlVersion: v1.2
class: CommandLineTool
{kind}:
  DockerRequirement: {{dockerPull: "debian:12"}}
baseCommand: "true"
inputs: []
outputs: []
"""


def engines(folder: Path, docker_answers: bool | None, podman: bool) -> str:
    """up's choice with these commands alone on PATH (docker_answers None: no docker)."""
    folder.mkdir()
    if docker_answers is not None:
        (folder / "docker").write_text(f"#!/bin/sh\nexit {0 if docker_answers else 1}\n")
    if podman:
        (folder / "podman").write_text("#!/bin/sh\nexit 0\n")
    for command in folder.iterdir():
        command.chmod(0o755)
    return up.container_engine({"PATH": str(folder)})


def test_docker_where_its_daemon_answers_the_user_else_podman_else_none(tmp_path):
    assert engines(tmp_path / "1", docker_answers=True, podman=True) == "docker"
    assert engines(tmp_path / "2", docker_answers=False, podman=True) == "podman"  # e.g. not in group docker
    assert engines(tmp_path / "3", docker_answers=None, podman=True) == "podman"
    assert engines(tmp_path / "4", docker_answers=False, podman=False) == "none"


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    def settings(engine: str, cwltool_options: str = "") -> Settings:
        monkeypatch.setenv("AIRFLOW__CWL__CONTAINER_ENGINE", engine)
        monkeypatch.setenv("AIRFLOW__CWL__CWLTOOL_OPTIONS", cwltool_options)
        monkeypatch.setenv("AIRFLOW__CWL__TMP_FOLDER", str(tmp_path / "tmp"))
        return Settings.load(use_airflow=False)
    return settings


def test_without_an_engine_a_required_container_is_refused_naming_the_ways_out(tmp_path, settings_for):
    for kind in ("requirements", "hints"):
        (tmp_path / f"{kind}.cwl").write_text(TOOL.format(kind=kind))
    with pytest.raises(CWLError) as refused:
        steps.check(settings_for("none"), str(tmp_path / "requirements.cwl"), encode({}))
    assert all(word in refused.value.reason for word in ("Docker", "Podman", "--no-container"))
    steps.check(settings_for("none"), str(tmp_path / "hints.cwl"), encode({}))  # cwltool runs it on the host
    steps.check(settings_for("none", "--no-container"), str(tmp_path / "requirements.cwl"), encode({}))
    steps.check(settings_for("docker"), str(tmp_path / "requirements.cwl"), encode({}))


def test_podman_runs_the_containers_when_chosen(tmp_path, settings_for):
    run_tmp = tmp_path / "run"
    assert steps._runtime(settings_for("podman"), tmp_path / "out", run_tmp, "t").podman
    assert not steps._runtime(settings_for("docker"), tmp_path / "out", run_tmp, "t").podman
    with pytest.raises(ValueError, match="container_engine 'rkt'"):
        settings_for("rkt")


def test_up_writes_the_engine_into_airflows_configuration(tmp_path):
    up.prepare(tmp_path, tmp_path / "airflow")
    up.configure(tmp_path, tmp_path / "airflow", 8090, "podman")
    assert "container_engine = podman" in (tmp_path / "airflow" / "airflow.cfg").read_text()
    assert os.stat(tmp_path / "airflow" / "airflow.cfg").st_mode & 0o077 == 0
