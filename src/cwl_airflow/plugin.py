"""The Airflow plugin: the /cwl API in the api-server, and the report listeners."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cwl_airflow import listener

URL_PREFIX = "/cwl"


class _APIApps:
    """Imports the API (FastAPI, cwltool: ~2 s) only in the process that asks for it: the api-server."""

    def __get__(self, instance: object, owner: type) -> list[dict[str, object]]:
        from cwl_airflow.api import app

        return [{"app": app, "url_prefix": URL_PREFIX, "name": "cwl-airflow"}]


class CWLAirflowPlugin(AirflowPlugin):
    name = "cwl_airflow"
    listeners = [listener]
    fastapi_apps = _APIApps()
