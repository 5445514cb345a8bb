"""Which Airflow processes preload cwltool (cwl_airflow.preload)."""

import pytest

from cwl_airflow import preload


@pytest.mark.parametrize(("argv", "warmed"), [
    (["airflow", "dag-processor"], True),
    (["airflow", "celery", "worker", "--queues", "default"], True),
    (["airflow", "api-server"], False),
    (["airflow", "scheduler"], False),
    (["airflow", "celery", "flower"], False),
    (["airflow", "tasks", "run", "dag-processor"], False),
    (["cwl-airflow", "run", "x.cwl"], False),
])
def test_only_the_forking_daemons_preload(monkeypatch, argv, warmed):
    calls = []
    monkeypatch.setattr(preload, "warm_up", calls.append)
    preload.warm_up_forking_daemon(("some.module",), argv=argv)
    assert calls == ([("some.module",)] if warmed else [])


def test_warm_up_loads_a_tool():
    preload.warm_up(("cwl_airflow.staging",))  # raises when cwltool or the example is missing
