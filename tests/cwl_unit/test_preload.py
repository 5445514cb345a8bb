"""Which Airflow processes preload cwltool (cwl_airflow.preload)."""

import pytest

from cwl_airflow import preload


@pytest.mark.parametrize(("argv", "executor", "warmed"), [
    (["airflow", "dag-processor"], "CeleryExecutor", True),
    (["airflow", "celery", "worker", "--queues", "default"], "CeleryExecutor", True),
    (["airflow", "api-server"], "CeleryExecutor", False),
    (["airflow", "scheduler"], "CeleryExecutor", False),
    # the LocalExecutor (`cwl-airflow up`) forks the task processes from the scheduler
    (["airflow", "scheduler"], "LocalExecutor", True),
    (["airflow", "api-server"], "LocalExecutor", False),
    (["airflow", "celery", "flower"], "CeleryExecutor", False),
    (["airflow", "tasks", "run", "dag-processor"], "CeleryExecutor", False),
    (["cwl-airflow", "run", "x.cwl"], "LocalExecutor", False),
])
def test_only_the_forking_daemons_preload(monkeypatch, argv, executor, warmed):
    calls = []
    monkeypatch.setattr(preload, "warm_up", calls.append)
    preload.warm_up_forking_daemon(("some.module",), argv=argv, executor=lambda: executor)
    assert calls == ([("some.module",)] if warmed else [])


def test_warm_up_loads_a_tool():
    preload.warm_up(("cwl_airflow.staging",))  # raises when cwltool or the example is missing
