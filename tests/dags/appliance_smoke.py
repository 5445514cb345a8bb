"""Two tasks in a row, run by the Celery worker: the appliance's smoke test."""

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("appliance_smoke", schedule=None, catchup=False, tags=["appliance-test"]):
    hello = BashOperator(task_id="hello", bash_command="echo hello from $(hostname)")
    done = BashOperator(task_id="done", bash_command="echo done")
    hello >> done
