"""Airflow listeners that turn CWL runs' events into reports (see reports.py).

Task events fire in the task's process on the worker, DAG run events in the scheduler; both
only queue reports in the local outbox. Runs of DAGs that are not CWLDAGs are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from cwl_airflow import reports
from cwl_airflow.config import Settings

log = logging.getLogger(__name__)
# the class names of cwl_airflow.extensions.operators (which imports cwltool: the scheduler does without)
CWL_OPERATORS = frozenset({"CWLJobDispatcher", "CWLStepOperator", "CWLOneStepRun", "CWLJobGatherer"})


def _base_url() -> str | None:
    """The process_report connection's endpoint URL; None when it is not defined."""
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(reports.CONNECTION)
    except Exception:  # not defined (AirflowNotFoundException) or not reachable: no reports
        log.debug("no %s connection: reports are off", reports.CONNECTION)
        return None
    return reports.endpoint_url(conn.host, conn.schema, conn.port, conn.extra_dejson)


def _queue(items: list[tuple[str, dict[str, Any]]]) -> None:
    base = _base_url()
    if base is None:
        return
    outbox = Settings.load().reports_folder
    for route, data in items:
        reports.put(outbox, base, route, data)


def _is_cwl(task: Any) -> bool:
    from cwl_airflow.extensions.operators import _CWLOperator

    return isinstance(task, _CWLOperator)


def _task_event(ti: Any, state: str, error: str = "") -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    states = dict(states, **{ti.task_id: state})
    run_state = "failed" if state == "failed" else "running"
    items = [
        ("status", reports.status(ti.dag_id, ti.run_id, ti.task_id, state)),
        ("progress", reports.progress(ti.dag_id, ti.run_id, run_state, reports.percent_done(states), error)),
    ]
    if state == "success" and ti.task.gives_outputs:
        from cwl_airflow.workflow import decode

        outputs = decode(ti.xcom_pull(task_ids=ti.task_id)) or {}  # XCom carries CWL values as JSON text
        items.append(("results", reports.results(ti.dag_id, ti.run_id, outputs)))
    _queue(items)


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    if _is_cwl(getattr(task_instance, "task", None)):
        _safely(_task_event, task_instance, "running")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    if _is_cwl(getattr(task_instance, "task", None)):
        _safely(_task_event, task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    if _is_cwl(getattr(task_instance, "task", None)):
        state = str(getattr(task_instance, "state", "") or "")
        _safely(_task_event, task_instance, "up_for_retry" if state == "up_for_retry" else "failed", str(error or ""))


def _scheduler_base_url() -> str | None:
    """The connection's URL in the scheduler, without the scheduler's own DB session.

    The scheduler forbids commits on its session while it holds locks, and Airflow's connection
    lookup commits one: read the environment, then the table through a separate session.
    """
    from airflow.models import Connection
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend
    from airflow.settings import engine
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    conn = EnvironmentVariablesBackend().get_connection(reports.CONNECTION)
    if conn is None:
        with Session(bind=engine) as session:
            conn = session.scalar(select(Connection).where(Connection.conn_id == reports.CONNECTION))
            if conn is not None:
                session.expunge(conn)
    return None if conn is None else reports.endpoint_url(conn.host, conn.schema, conn.port, conn.extra_dejson)


def _run_event(dag_run: Any, msg: str) -> None:
    """In the scheduler: the run's final progress, and the status of tasks no worker reported."""
    from airflow.models import TaskInstance
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return
    rows = session.execute(select(TaskInstance.task_id, TaskInstance.state, TaskInstance.operator).where(
        TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)).all()
    if not any(operator in CWL_OPERATORS for *_, operator in rows):
        return  # not a CWLDAG
    states = {task: str(state) if state else None for task, state, _ in rows}
    base = _scheduler_base_url()
    if base is None:
        return
    state = str(dag_run.state)
    items = [("status", reports.status(dag_run.dag_id, dag_run.run_id, t, s)) for t, s in states.items()
             if s in ("upstream_failed", "skipped")]
    error = msg if state == "failed" else ""
    percent = 100 if state == "success" else reports.percent_done(states)
    items.append(("progress", reports.progress(dag_run.dag_id, dag_run.run_id, state, percent, error)))
    outbox = Settings.load().reports_folder
    for route, data in items:
        reports.put(outbox, base, route, data)


def _safely(event: Any, *args: Any) -> None:
    """Listeners must never disturb the scheduler or a task: log and go on."""
    try:
        event(*args)
    except Exception:
        log.exception("cwl-airflow: could not queue a report")


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _safely(_run_event, dag_run, msg)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _safely(_run_event, dag_run, msg)
