"""A warm cwltool in the Airflow daemons that fork a child per unit of work.

A Celery worker forks a process per task, the DAG processor one per DAG file it parses, the step
service (cwl_airflow.steps) one per request, and a scheduler whose executor is the LocalExecutor
(`cwl-airflow up`) forks the processes that run tasks. Their main process imports cwltool and
loads the CWL schemas once; every child starts with both (measured: about 0.9 s of CPU less per
DAG parse, 0.6 s per task).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from importlib import resources

# the daemons that fork per task or per file: `airflow celery worker`, `airflow dag-processor`
FORKING_DAEMONS = (["celery", "worker"], ["dag-processor"])
# the executors that fork task processes from the scheduler
FORKING_EXECUTORS = ("LocalExecutor",)


def warm_up(modules: tuple[str, ...] = ()) -> None:
    """Import cwltool (and these modules) and load the CWL schemas, by loading a small tool."""
    from cwl_airflow.workflow import CWLWorkflow

    for module in modules:
        importlib.import_module(module)

    with resources.as_file(resources.files("cwl_airflow").joinpath("example/hello.cwl")) as example:
        CWLWorkflow(example)


def _executor() -> str:
    from airflow.configuration import conf

    return conf.get("core", "executor")


def warm_up_forking_daemon(modules: tuple[str, ...] = (), argv: list[str] = sys.argv,
                           executor: Callable[[], str] = _executor) -> None:
    """warm_up() in a daemon of FORKING_DAEMONS, or in a scheduler whose executor is one of
    FORKING_EXECUTORS; nothing in other processes."""
    forks = any(argv[1:1 + len(command)] == command for command in FORKING_DAEMONS) or (
        argv[1:2] == ["scheduler"] and any(name in executor() for name in FORKING_EXECUTORS))
    if not forks:
        return
    try:
        warm_up(modules)
    except Exception:  # a daemon without a warm cwltool still works, only slower
        logging.getLogger(__name__).exception("cwl-airflow: could not preload cwltool")
