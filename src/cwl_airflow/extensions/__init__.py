"""Upstream's import paths: `from cwl_airflow.extensions.cwldag import CWLDAG`."""
