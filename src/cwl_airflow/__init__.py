"""CWL workflows as Apache Airflow 3 DAGs (the maintained successor of upstream cwl-airflow)."""

__version__ = "2.0.0"
