"""CWLDAG: an Airflow DAG built from a CWL workflow (upstream's class, same constructor)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airflow.configuration import conf
from airflow.sdk import DAG

from cwl_airflow import queues
from cwl_airflow.config import Settings
from cwl_airflow.extensions.operators import (
    DISPATCHER,
    GATHERER,
    CWLJobDispatcher,
    CWLJobGatherer,
    CWLOneStepRun,
    CWLStepOperator,
    task_id,
)
from cwl_airflow.steps import load_workflow
from cwl_airflow.workflow import CWLError


DAG_FILE = """\
# Made by cwl-airflow for {workflow}; removing this file removes the workflow's DAG.
from cwl_airflow.extensions.cwldag import CWLDAG

dag = CWLDAG(dag_id={dag_id!r}, workflow={workflow!r})
"""


def dag_file_text(dag_id: str, workflow: Path) -> str:
    """The DAG file of an uploaded workflow."""
    return DAG_FILE.format(dag_id=dag_id, workflow=str(workflow))


class CWLDAG(DAG):
    """dispatcher -> one task per workflow step, wired by data dependencies -> gatherer; a
    workflow of one step (a tool) is that step's task alone (it dispatches and gathers too).

    `workflow` is the path of a CWL file (a Workflow, or a single tool). Other DAG arguments
    (schedule, tags, default_args, ...) pass through. A run's conf is {"job": {...}}.
    """

    def __init__(self, dag_id: str | None = None, workflow: str | None = None, default_args: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        if not workflow:
            raise CWLError("CWLDAG needs workflow=<path of a CWL file>")
        path = str(Path(workflow).expanduser().resolve())
        try:
            wf = load_workflow(path, formats=False)  # every parse of the DAG file loads it
        except (CWLError, OSError) as err:
            raise CWLError(f"{path}: {getattr(err, 'reason', err)}") from None
        kwargs.setdefault("schedule", None)
        kwargs.setdefault("is_paused_upon_creation", False)
        kwargs.setdefault("tags", ["cwl"])
        doc = wf.process.tool.get("doc")
        kwargs.setdefault("doc_md", "\n".join(map(str, doc)) if isinstance(doc, list) else str(doc) if doc else None)
        super().__init__(dag_id=dag_id or task_id(Path(path).stem), default_args=default_args or {}, **kwargs)
        self.fileloc = sys._getframe(1).f_code.co_filename  # the DAG file, not this module
        self.workflow = path

        available = queues.load(Settings.load().queues_file)
        default_queue = conf.get("operators", "default_queue")
        steps = wf.dag_steps()
        queues_of = {}
        for step in steps:
            try:
                queues_of[step.name] = queues.choose(available, step.cores, step.ram, default_queue)
            except queues.QueueError as err:
                raise CWLError(f"{path}: step {step.name}: {err}") from None
        with self:
            if len(steps) == 1:
                (step,) = steps
                CWLOneStepRun(task_id=task_id(step.name), step=step.name, workflow=path, queue=queues_of[step.name])
                return
            dispatcher = CWLJobDispatcher(task_id=DISPATCHER, workflow=path)
            gatherer = CWLJobGatherer(task_id=GATHERER, workflow=path)
            tasks = {step.name: CWLStepOperator(task_id=task_id(step.name), step=step.name, workflow=path,
                                                queue=queues_of[step.name]) for step in steps}
            needed = set()
            for step in steps:
                task = tasks[step.name]
                if step.upstream:
                    for name in step.upstream:
                        tasks[name] >> task
                        needed.add(name)
                else:
                    dispatcher >> task
            for name, task in tasks.items():
                if name not in needed:
                    task >> gatherer
            if not tasks:  # a workflow without steps: its outputs are its inputs
                dispatcher >> gatherer
