"""Celery configuration of the appliance: Airflow's default plus a warm cwltool in workers.

Airflow reads it when [celery] celery_config_options = cwl_airflow.celery_config.CELERY_CONFIG.
In a Celery worker's main process it also imports cwltool and loads the CWL schemas once; task
processes are forked from that process and start with both (about 0.6 s less per task).
"""

from __future__ import annotations

import logging
import sys
from importlib import resources

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


def _warm_up() -> None:
    from cwl_airflow.extensions import cwldag  # noqa: F401  (imports cwltool and the operators)
    from cwl_airflow.workflow import CWLWorkflow

    with resources.as_file(resources.files("cwl_airflow").joinpath("example/hello.cwl")) as example:
        CWLWorkflow(example)


if sys.argv[1:3] == ["celery", "worker"]:
    try:
        _warm_up()
    except Exception:  # a worker without a warm cwltool still works
        logging.getLogger(__name__).exception("cwl-airflow: could not preload cwltool")
