"""Airflow imports this module early in every process (entry point `airflow.policy`).

It defines no cluster policy. In the DAG processor it is the one hook that runs in the main
process, before the children that parse DAG files are forked: there it preloads cwltool.
"""

from cwl_airflow import preload

preload.warm_up_forking_daemon(modules=("cwl_airflow.extensions.cwldag",))  # with the DAG class
