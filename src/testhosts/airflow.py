"""A small client of the appliance's Airflow 3 REST API, as users and scripts call it (tests, bench)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

FINISHED = {"success", "failed"}


class AirflowClient:
    def __init__(self, url: str, username: str, password: str, timeout: float = 180) -> None:
        """timeout: seconds every wait_* allows unless told otherwise (more under software emulation)."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.username, self.password = username, password
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            body = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                                 auth=False)
            self._token = body["access_token"]
        return self._token

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    def wait_healthy(self, timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                health = self.health()
                if all(part.get("status") == "healthy" for part in health.values()):
                    return health
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(2)
        raise TimeoutError(f"Airflow not healthy after {timeout:.0f}s: {health}")

    def wait_dag(self, dag_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the DAG processor has parsed the DAG; unpause it."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(f"/api/v2/dags/{dag_id}")
                return self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout:.0f}s")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float | None = None) -> str:
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            try:
                state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
                if state in FINISHED:
                    return state
            except urllib.error.HTTPError:
                raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # a busy API server: ask again
                pass
            time.sleep(1)
        raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f}s")

    def run(self, dag_id: str, timeout: float | None = None) -> tuple[str, str]:
        """Trigger the DAG and wait for the run to finish: (run_id, state)."""
        run_id = self.trigger(dag_id)
        return run_id, self.wait_run(dag_id, run_id, timeout)
