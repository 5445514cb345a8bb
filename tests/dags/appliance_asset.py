"""Declares an asset, so that removing this file orphans it (the scheduler's asset cleanup)."""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

with DAG("appliance_asset", schedule=None, catchup=False, tags=["appliance-test"]):
    EmptyOperator(task_id="produce", outlets=[Asset("appliance-test-asset")])
