"""Celery configuration of the appliance: Airflow's default plus a warm cwltool in workers.

Airflow reads it when [celery] celery_config_options = cwl_airflow.celery_config.CELERY_CONFIG.
In a Celery worker's main process it also preloads cwltool (cwl_airflow.preload), so that
task processes start warm.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from cwl_airflow import preload

CELERY_CONFIG = DEFAULT_CELERY_CONFIG

preload.warm_up_forking_daemon(modules=("cwl_airflow.extensions.cwldag",))  # with the operators
