"""The tasks of a CWLDAG: the dispatcher, one task per step, the gatherer.

Tasks exchange CWL values (JSON text; files by location) through XCom; the files themselves
stay in the run's tmp folder, which every worker must see at the same path.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from cwltool.argparser import arg_parser
from cwltool.context import RuntimeContext
from schema_salad.ref_resolver import uri_file_path

from cwl_airflow.config import Settings
from cwl_airflow.staging import file_under, files_in
from cwl_airflow.workflow import CWLError, CWLWorkflow, decode, encode, job_requirements

DISPATCHER = "CWLJobDispatcher"
GATHERER = "CWLJobGatherer"
CWLTOOL_PREFIX = "http://commonwl.org/cwltool#"


@lru_cache(maxsize=8)
def _workflow(path: str, mtime: float, requirements: str) -> CWLWorkflow:
    return CWLWorkflow(path, json.loads(requirements))


def load_workflow(path: str, job: dict[str, Any] | None = None) -> CWLWorkflow:
    """The workflow (with the job's `cwl:requirements`), loaded once per process and file version."""
    return _workflow(path, os.stat(path).st_mtime, json.dumps(job_requirements(job or {})))


def _runtime(settings: Settings, outdir: Path, run_tmp: Path, prefix: str) -> RuntimeContext:
    """cwltool's runtime options: the configured ones, then the folders of this run."""
    args = arg_parser().parse_args([*shlex.split(settings.cwltool_options), "unused.cwl"])
    runtime = RuntimeContext(vars(args))
    runtime.outdir = str(outdir)
    runtime.tmpdir_prefix = str(run_tmp / "tmp" / prefix) + "-"
    runtime.tmp_outdir_prefix = str(run_tmp / "tmp" / prefix) + "-out-"
    runtime.cidfile_dir = str(run_tmp / "cid")
    runtime.cidfile_prefix = prefix
    runtime.record_container_id = True
    runtime.move_outputs = "move"
    for folder in ("cid", "tmp"):
        (run_tmp / folder).mkdir(parents=True, exist_ok=True)
    return runtime


class _CWLOperator(BaseOperator):
    template_fields = ()
    ui_color = "#d5e8f7"

    def __init__(self, *, workflow: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workflow = workflow

    def _run_tmp(self, context: Any) -> Path:
        return Settings.load().run_tmp(self.dag_id, context["run_id"])

    def _job(self, context: Any) -> dict[str, Any]:
        """The job as the dispatcher prepared it."""
        return decode(context["ti"].xcom_pull(task_ids=DISPATCHER)) or {}

    def _results(self, context: Any, steps: list[str]) -> dict[str, Any]:
        """The results of these finished steps, by step name."""
        return {step: decode(context["ti"].xcom_pull(task_ids=task_id(step))) for step in steps}


class CWLJobDispatcher(_CWLOperator):
    """Reads the job from the run's conf ({"job": {...}}) and prepares it as cwltool would."""

    def execute(self, context: Any) -> str:
        settings = Settings.load()
        conf = context["dag_run"].conf or {}
        job = conf.get("job")
        if not isinstance(job, dict):
            raise CWLError('the run\'s conf must be {"job": {...}} with the workflow\'s inputs')
        job = check_job(load_workflow(self.workflow, job), job, settings)
        self._run_tmp(context).mkdir(parents=True, exist_ok=True)
        return encode(job)


class CWLStepOperator(_CWLOperator):
    """Runs one workflow step with cwltool (in Docker when the step asks for it)."""

    def __init__(self, *, step: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step

    def execute(self, context: Any) -> str:
        job = self._job(context)
        wf = load_workflow(self.workflow, job)
        upstream = next(s.upstream for s in wf.dag_steps() if s.name == self.step)
        finished = self._results(context, sorted(upstream))
        run_tmp = self._active_run_tmp = self._run_tmp(context)
        runtime = _runtime(Settings.load(), run_tmp / "steps" / self.task_id, run_tmp, self.task_id)
        # held while this process lives: a stop waits until it can take it
        (run_tmp / "running").mkdir(parents=True, exist_ok=True)
        with open(run_tmp / "running" / f"{self.task_id}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return encode(wf.run_step(self.step, job, finished, runtime))

    def on_kill(self) -> None:
        """Kill this step's containers (cwltool records their ids) and cwltool's processes."""
        from cwltool.utils import processes_to_kill

        run_tmp = getattr(self, "_active_run_tmp", None)
        for cidfile in glob.glob(str(run_tmp / "cid" / f"{self.task_id}-*.cid")) if run_tmp else []:
            cid = Path(cidfile).read_text().strip()
            if cid:
                subprocess.run(["docker", "kill", cid], capture_output=True, check=False)
        while processes_to_kill:
            process = processes_to_kill.popleft()
            if process.poll() is None:
                process.kill()


class CWLJobGatherer(_CWLOperator):
    """Collects the workflow's outputs into the run's output folder; removes the tmp data."""

    def execute(self, context: Any) -> str:
        settings = Settings.load()
        job = self._job(context)
        wf = load_workflow(self.workflow, job)
        finished = self._results(context, list(wf.steps))
        run_tmp = self._run_tmp(context)
        outdir = settings.run_outputs(self.dag_id, context["run_id"])
        outputs = strip_cwltool_keys(wf.gather(job, finished, _runtime(settings, outdir, run_tmp, "gather")))
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "outputs.json").write_text(json.dumps(outputs, indent=2))
        if not settings.keep_tmp_data:
            shutil.rmtree(run_tmp, ignore_errors=True)
            with contextlib.suppress(OSError):  # the workflow's folder, once its last run is gone
                run_tmp.parent.rmdir()
        return encode(outputs)


def check_job(wf: CWLWorkflow, job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The job prepared for a run; CWLError when it is invalid or names files it may not use.

    A job may name files (after links are followed) under the inputs folder and the
    operator's data roots only, and http(s) inputs only where the operator allows them: a
    trigger must not make a tool read the workers' own files (Airflow's secrets)."""
    job = wf.prepare_job(job, settings.inputs_folder)
    roots = (settings.inputs_folder, *settings.data_roots)
    refused, missing = [], []
    for item in files_in(job):
        location = item.get("location", "")
        if location.startswith("file://"):
            if not file_under(location, roots):
                refused.append(location)
            elif not Path(uri_file_path(location)).exists():
                missing.append(location)
        elif location.startswith(("http://", "https://")) and not settings.http_inputs:
            refused.append(location)
    if refused:
        raise CWLError("inputs outside the inputs folder and the data roots (data_roots, http_inputs): "
                       + ", ".join(sorted(set(refused))))
    if missing:
        raise CWLError("input files not found: " + ", ".join(missing))
    return job


def task_id(step: str) -> str:
    """A CWL step name as an Airflow task id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in step)


def strip_cwltool_keys(value: Any) -> Any:
    """Output objects without cwltool's private keys (e.g. cwltool#generation)."""
    if isinstance(value, dict):
        return {k: strip_cwltool_keys(v) for k, v in value.items() if not k.startswith(CWLTOOL_PREFIX)}
    if isinstance(value, list):
        return [strip_cwltool_keys(v) for v in value]
    return value
