"""The step service as Airflow's daemons use it: over its socket, in a process of its own."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cwl_airflow import steps
from cwl_airflow.config import Settings
from cwl_airflow.workflow import CWLError, encode

TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo said-on-stderr >&2; echo "$0" > out.txt; sleep "$1"']
inputs:
  msg: {type: string, inputBinding: {position: 1}}
  pause: {type: int, default: 0, inputBinding: {position: 2}}
outputs: {out: {type: File, outputBinding: {glob: out.txt}}}
"""


@pytest.fixture
def service(tmp_path, monkeypatch):
    """A step service on a socket of its own; its settings are the environment's."""
    env = {f"AIRFLOW__CWL__{key}": str(tmp_path / key.lower()) for key in
           ("WORKFLOWS_FOLDER", "INPUTS_FOLDER", "OUTPUTS_FOLDER", "TMP_FOLDER")}
    env["AIRFLOW__CWL__CWLTOOL_OPTIONS"] = "--no-container"
    env["AIRFLOW__CWL__STEP_SOCKET"] = str(tmp_path / "step.sock")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
        if key.endswith("_FOLDER"):
            Path(value).mkdir()
    (tmp_path / "workflows_folder" / "tool.cwl").write_text(TOOL)
    server = subprocess.Popen([sys.executable, "-c", "import sys; from cwl_airflow import steps; "
                               "sys.exit(steps.serve(sys.argv[1]))", env["AIRFLOW__CWL__STEP_SOCKET"]],
                              env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while not (tmp_path / "step.sock").exists():
        assert server.poll() is None and time.monotonic() < deadline, "the step service did not start"
        time.sleep(0.1)
    yield Settings.load(use_airflow=False), tmp_path / "workflows_folder" / "tool.cwl"
    server.kill()
    server.wait()


def test_a_step_runs_in_the_service_and_its_output_is_relayed(service, caplog):
    settings, tool = service
    job = steps.run("dispatch", settings, workflow=str(tool), job=encode({"msg": "hi"}), dag_id="d", run_id="r")
    with caplog.at_level(logging.INFO):
        result = json.loads(steps.run("step", settings, workflow=str(tool), job=job, finished={}, dag_id="d",
                                      run_id="r", step_name="tool", task_id="tool"))
    assert result["status"] == "success"
    assert "said-on-stderr" in caplog.text  # what the tool wrote is in the task's log
    outputs = json.loads(steps.run("gather", settings, workflow=str(tool), job=job,
                                   finished={"tool": json.dumps(result)}, dag_id="d", run_id="r"))
    assert Path(outputs["out"]["location"].removeprefix("file://")).read_text() == "hi\n"
    assert not settings.run_tmp("d", "r").exists()


def test_a_tool_runs_whole_in_one_request(service):
    """A one-step DAG's task: the job prepared, the step run, its outputs gathered, tmp removed."""
    settings, tool = service
    outputs = json.loads(steps.run("run_alone", settings, workflow=str(tool), job=encode({"msg": "all"}),
                                   dag_id="d", run_id="one", step_name="tool", task_id="tool"))
    assert Path(outputs["out"]["location"].removeprefix("file://")).read_text() == "all\n"
    assert json.loads((settings.run_outputs("d", "one") / "outputs.json").read_text()) == outputs
    assert not settings.run_tmp("d", "one").exists()
    with pytest.raises(CWLError, match="msg"):  # the job is checked as the dispatcher checks it
        steps.run("run_alone", settings, workflow=str(tool), job=encode({"msg": 3}), dag_id="d", run_id="bad",
                  step_name="tool", task_id="tool")


def test_errors_cross_with_their_reason(service):
    settings, tool = service
    with pytest.raises(CWLError, match="msg"):
        steps.run("check", settings, workflow=str(tool), job=encode({"msg": 3}))
    with pytest.raises(steps.StepError, match="must be in"):
        steps.run("check", settings, workflow="/etc/passwd", job=encode({}))
    with pytest.raises(steps.StepError, match="unknown operation"):
        steps.run("shell", settings)
    (tool.parent / "bad.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\ninputs: 3\n")
    with pytest.raises(CWLError):
        steps.run("validate", settings, workflow=str(tool.parent / "bad.cwl"))
    assert steps.run("validate", settings, workflow=str(tool)) is None


PAUSE = 271828  # seconds: a command line no other process on the machine has


def test_a_caller_that_goes_away_ends_its_step(service):
    """A stopped task closes its connection: the step's processes end with it."""
    settings, tool = service
    job = steps.run("dispatch", settings, workflow=str(tool), job=encode({"msg": "x", "pause": PAUSE}),
                    dag_id="d", run_id="r", )
    request = {"operation": "step", "arguments": {"workflow": str(tool), "job": job, "finished": {}, "dag_id": "d",
                                                  "run_id": "r", "step_name": "tool", "task_id": "tool"}}
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(settings.step_socket)
        conn.sendall(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + 30
        while subprocess.run(["pgrep", "-fx", f"sleep {PAUSE}"], capture_output=True).returncode:
            assert time.monotonic() < deadline, "the step did not start"
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    while not subprocess.run(["pgrep", "-fx", f"sleep {PAUSE}"], capture_output=True).returncode:
        assert time.monotonic() < deadline, "the step outlived its caller"
        time.sleep(0.2)


def test_validation_is_bounded_in_cpu_time():
    code = ("from cwl_airflow import steps\nsteps._limit(1, 4 << 30)\ntry:\n    while True: sum(range(99))\n"
            "except steps.CWLError as err:\n    print(err.reason)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "more than 1 s of CPU time" in done.stdout, done.stderr
