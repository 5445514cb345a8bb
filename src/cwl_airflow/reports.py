"""Progress, status and results reports: an outbox folder and the sender that empties it.

Listeners never send: they put each report into the outbox (a JSON file, written atomically,
named so that sorting gives the order of events). `cwl-airflow reporter`, a small daemon
without Airflow imports, POSTs them in order to the `process_report` connection's
<endpoint>/<route> and deletes each one the receiver accepted. While the receiver is down it
retries the oldest report with exponential backoff, so none is lost or reordered; a report
the receiver refuses (4xx) is moved to outbox/refused/ and logged.

Signed reports are JWTs whose claims are the report plus `aud` (the URL it is posted to), `iat`,
`exp` (REPORT_LIFETIME later) and `seq`, which grows by one with every report a receiver
answered: a receiver refuses a replay by remembering the last `seq` it took.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cwl_airflow.signing import sign

log = logging.getLogger(__name__)
ROUTES = ("progress", "status", "results")
CONNECTION = "process_report"
REPORT_LIFETIME = 300  # seconds; a report that waits longer is signed again when it is sent
_sequence = 0


def progress(dag_id: str, run_id: str, state: str, percent: int, error: str = "") -> dict[str, Any]:
    return {"dag_id": dag_id, "run_id": run_id, "state": state, "progress": percent, "error": error}


def status(dag_id: str, run_id: str, task_id: str, state: str) -> dict[str, Any]:
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "state": state}


def results(dag_id: str, run_id: str, outputs: dict[str, Any]) -> dict[str, Any]:
    return {"dag_id": dag_id, "run_id": run_id, "results": outputs}


def percent_done(states: dict[str, str | None]) -> int:
    """Percent of a run's tasks that finished (success or skipped)."""
    done = sum(1 for s in states.values() if s in ("success", "skipped"))
    return int(100 * done / len(states)) if states else 0


def endpoint_url(host: str | None, schema: str | None, port: int | None, extra: dict[str, Any]) -> str:
    """The base URL of an HTTP connection: <schema>://<host>[:port]/<extra.endpoint>."""
    host = host or "localhost"
    if "://" not in host:
        host = f"{schema or 'http'}://{host}"
    if port:
        host = f"{host}:{port}"
    return host.rstrip("/") + "/" + str(extra.get("endpoint", "")).strip("/")


def put(outbox: Path, base_url: str, route: str, data: dict[str, Any]) -> Path:
    """Queue one report; returns its file."""
    global _sequence
    _sequence += 1
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{_sequence:06d}"
    tmp = outbox / f".{name}.tmp"
    tmp.write_text(json.dumps({"url": f"{base_url.rstrip('/')}/{route}", "data": data}))
    return tmp.rename(outbox / f"{name}.json")


def _post(url: str, body: dict[str, Any], timeout: float) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _sequence_number(outbox: Path) -> int:
    """The `seq` of the next report (kept in the outbox across restarts)."""
    try:
        return int((outbox / "sequence").read_text())
    except (OSError, ValueError):
        return 1


def _save_sequence_number(outbox: Path, number: int) -> None:
    tmp = outbox / ".sequence.tmp"
    tmp.write_text(str(number))
    tmp.replace(outbox / "sequence")


def deliver_once(outbox: Path, private_key: str, algorithm: str, timeout: float = 10) -> bool:
    """Send the queued reports in order; False when one could not be delivered (retry later)."""
    seq = _sequence_number(outbox)
    for entry in sorted(outbox.glob("*.json")):
        report = json.loads(entry.read_text())
        data = report["data"]
        claims = {**data, "aud": report["url"], "seq": seq}
        body = {"payload": sign(claims, private_key, algorithm, REPORT_LIFETIME)} if private_key else data
        try:
            code = _post(report["url"], body, timeout)
        except (OSError, urllib.error.URLError) as err:
            log.warning("report %s not delivered to %s: %s", entry.name, report["url"], err)
            return False
        if code >= 500 or code in (408, 429):
            log.warning("report %s not delivered to %s: HTTP %s", entry.name, report["url"], code)
            return False
        seq += 1  # the receiver has seen this seq
        _save_sequence_number(outbox, seq)
        if code >= 400:
            log.error("report %s refused by %s: HTTP %s; moved to refused/", entry.name, report["url"], code)
            (outbox / "refused").mkdir(exist_ok=True)
            entry.rename(outbox / "refused" / entry.name)
            continue
        entry.unlink()
    return True


def deliver_forever(outbox: Path, private_key: str, algorithm: str, poll: float = 0.5, max_backoff: float = 60) -> None:
    """The reporter daemon's loop."""
    outbox.mkdir(parents=True, exist_ok=True)
    backoff = 1.0
    while True:
        if deliver_once(outbox, private_key, algorithm):
            backoff = 1.0
            time.sleep(poll)
        else:
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
