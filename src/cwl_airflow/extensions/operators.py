"""The tasks of a CWLDAG: the dispatcher, one task per step, the gatherer; or, for a workflow of
one step (a tool), that step alone, doing all three.

Tasks exchange CWL values (JSON text; files by location) through XCom; the files themselves
stay in the run's tmp folder, which every worker must see at the same path. The CWL work of
each task is an operation of `cwl_airflow.steps`, done where `[cwl] step_socket` says (the
step service, as the step user, on a provisioned host).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from cwl_airflow import steps
from cwl_airflow.config import Settings
from cwl_airflow.steps import load_workflow
from cwl_airflow.workflow import CWLError, decode, encode

DISPATCHER = "CWLJobDispatcher"
GATHERER = "CWLJobGatherer"


class _CWLOperator(BaseOperator):
    template_fields = ()
    ui_color = "#d5e8f7"
    gives_outputs = False  # its result (XCom) is the workflow's output object

    def __init__(self, *, workflow: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workflow = workflow

    def _run(self, context: Any) -> dict[str, str]:
        return {"workflow": self.workflow, "dag_id": self.dag_id, "run_id": context["run_id"]}

    def _job(self, context: Any) -> str:
        """The job as the dispatcher prepared it."""
        return context["ti"].xcom_pull(task_ids=DISPATCHER) or "{}"

    def _results(self, context: Any, steps_done: list[str]) -> dict[str, str]:
        """The results of these finished steps, by step name."""
        return {step: context["ti"].xcom_pull(task_ids=task_id(step)) for step in steps_done}


def _conf_job(context: Any) -> str:
    """The job of the run's conf ({"job": {...}})."""
    job = (context["dag_run"].conf or {}).get("job")
    if not isinstance(job, dict):
        raise CWLError('the run\'s conf must be {"job": {...}} with the workflow\'s inputs')
    return encode(job)


class CWLJobDispatcher(_CWLOperator):
    """Reads the job from the run's conf and prepares it as cwltool would."""

    def execute(self, context: Any) -> str:
        return steps.run("dispatch", job=_conf_job(context), **self._run(context))


class CWLStepOperator(_CWLOperator):
    """Runs one workflow step with cwltool (in Docker when the step asks for it)."""

    def __init__(self, *, step: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step

    def execute(self, context: Any) -> str:
        job = self._job(context)
        upstream = next(s.upstream for s in load_workflow(self.workflow, decode(job), formats=False).dag_steps()
                        if s.name == self.step)
        self._arguments = self._step_arguments(context)
        return steps.run("step", job=job, finished=self._results(context, sorted(upstream)), **self._arguments)

    def _step_arguments(self, context: Any) -> dict[str, str]:
        """The step's operation arguments, kept for on_kill."""
        return {**self._run(context), "step_name": self.step, "task_id": self.task_id}

    def on_kill(self) -> None:
        """In this process, kill the step's containers and processes; the step service does
        that itself when this process ends (its connection closes)."""
        settings = Settings.load()
        if not settings.step_socket and hasattr(self, "_arguments"):
            steps.kill_step(settings, self._arguments)


class CWLOneStepRun(CWLStepOperator):
    """The whole run of a workflow of one step (a tool), in one task named after the step: the
    job prepared, the step run, the outputs gathered. One task instead of three: each costs a
    Celery delivery, a task process and the scheduler's turn (most CWL documents are tools)."""

    gives_outputs = True

    def execute(self, context: Any) -> str:
        self._arguments = self._step_arguments(context)
        return steps.run("run_alone", job=_conf_job(context), **self._arguments)


class CWLJobGatherer(_CWLOperator):
    """Collects the workflow's outputs into the run's output folder; removes the tmp data."""

    gives_outputs = True

    def execute(self, context: Any) -> str:
        job = self._job(context)
        steps_done = list(load_workflow(self.workflow, decode(job), formats=False).steps)
        return steps.run("gather", job=job, finished=self._results(context, steps_done), **self._run(context))


def task_id(step: str) -> str:
    """A CWL step name as an Airflow task id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in step)
