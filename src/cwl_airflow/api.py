"""The workflow/run REST API: a FastAPI app that Airflow's api-server mounts at /cwl.

It shares the api-server's port and authentication: every call needs an Airflow bearer token
(POST /auth/token) and the matching DAG permission. OpenAPI: /cwl/openapi.json, /cwl/docs.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.configuration import conf as airflow_conf
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cwl_airflow import __version__, reports, staging, steps
from cwl_airflow.config import Settings, read_key
from cwl_airflow.extensions.cwldag import dag_file_text
from cwl_airflow.signing import SignatureError, verify_trigger
from cwl_airflow.workflow import CWLError, encode

DAG_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
BUNDLE = "dags-folder"  # Airflow's bundle of the dags folder

app = FastAPI(
    title="cwl-airflow",
    version=__version__,
    description="Upload CWL workflows, run them with a job, follow and stop runs, fetch their outputs.",
)
ARCHIVE_ROUTE = "/inputs/archive"  # streams its body, with its own limit (max_upload_mib)


@app.middleware("http")
async def limit_request_bodies(request: Request, call_next: Any) -> Response:
    """JSON bodies must declare their length, and stay within what an uploaded workflow may be."""
    if request.method in ("POST", "PUT", "PATCH") and not request.url.path.endswith(ARCHIVE_ROUTE):
        declared = request.headers.get("content-length", "0")  # neither header: no body
        limit = Settings.load().max_request_bytes
        if "transfer-encoding" in request.headers or not declared.isdigit():
            return JSONResponse({"detail": {"reason": "send the body with a Content-Length"}}, status_code=411)
        if int(declared) > limit:
            return JSONResponse({"detail": {"reason": f"the request body exceeds {limit} bytes "
                                                      "(max_workflow_mib)"}}, status_code=413)
    return await call_next(request)


class Upload(BaseModel):
    dag_id: str = Field(description="id of the workflow's DAG: letters, digits, _ . -")
    workflow_content: str = Field(description="the CWL document, gzip-compressed then base64-encoded (as upstream)")
    overwrite: bool = Field(False, description="replace a different workflow uploaded under the same dag_id")


class Trigger(BaseModel):
    job: dict[str, Any] = Field(description="the workflow's inputs")
    run_id: str | None = Field(None, description="defaults to one Airflow makes")
    signature: str | None = Field(None, description="JWT over run_id and conf, when the appliance requires one")


def _fail(code: int, reason: str, **extra: Any) -> HTTPException:
    return HTTPException(status_code=code, detail={"reason": reason, **extra})


def _paths(dag_id: str) -> tuple[Path, Path]:
    """The workflow file and the DAG file of a dag_id."""
    if not DAG_ID.match(dag_id):
        raise _fail(400, f"invalid dag_id {dag_id!r}: use letters, digits, _ . - (at most 200)")
    dags_folder = Path(airflow_conf.get("core", "dags_folder"))
    return Settings.load().workflows_folder / f"{dag_id}.cwl", dags_folder / f"cwl_{dag_id}.py"


def _dag_state(dag_id: str) -> dict[str, Any]:
    from airflow.models import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from sqlalchemy import select

    _, dag_file = _paths(dag_id)
    with create_session() as session:
        dag = session.get(DagModel, dag_id)
        error = session.scalar(select(ParseImportError.stacktrace).where(
            ParseImportError.filename.in_([str(dag_file), dag_file.name])))
    return {"ready": bool(dag and dag.is_stale is False), "import_error": error}


@app.get("/appliance", dependencies=[Depends(requires_access_dag("GET"))])
def appliance() -> dict[str, Any]:
    """What a client needs to sign triggers for this appliance."""
    settings = Settings.load()
    return {"signed_triggers": bool(settings.trigger_public_key), "audience": settings.signature_audience,
            "jwt_algorithm": settings.jwt_algorithm, "max_signature_lifetime": settings.max_signature_lifetime}


@app.get("/workflows", dependencies=[Depends(requires_access_dag("GET"))])
def list_workflows() -> list[dict[str, Any]]:
    """Uploaded workflows and whether Airflow has parsed their DAGs."""
    folder = Settings.load().workflows_folder
    return [{"dag_id": p.stem, "workflow": str(p), **_dag_state(p.stem)} for p in sorted(folder.glob("*.cwl"))]


@app.get("/workflows/{dag_id}", dependencies=[Depends(requires_access_dag("GET"))])
def get_workflow(dag_id: str) -> dict[str, Any]:
    workflow, _ = _paths(dag_id)
    if not workflow.exists():
        raise _fail(404, f"no workflow {dag_id!r}")
    return {"dag_id": dag_id, "workflow": str(workflow), **_dag_state(dag_id)}


@app.post("/workflows", status_code=201, dependencies=[Depends(requires_access_dag("PUT"))])
def upload_workflow(upload: Upload, user: GetUserDep) -> dict[str, Any]:
    """Validate a CWL document and create its DAG. The DAG can run once it is `ready`.

    A workflow is code that will run on the workers: uploading needs DAG edit rights and a
    name in `uploaders`."""
    workflow, dag_file = _paths(upload.dag_id)
    settings = Settings.load()
    if "*" not in settings.uploaders and user.get_name() not in settings.uploaders:
        raise _fail(403, f"user {user.get_name()!r} may not upload workflows: uploading is for the users "
                         "named in [cwl] uploaders")
    try:
        content = _gunzip(base64.b64decode(upload.workflow_content, validate=True), settings.max_workflow_bytes)
    except (binascii.Error, zlib.error) as err:
        raise _fail(400, f"workflow_content is not base64 of gzip data: {err}") from None
    if content is None:
        raise _fail(413, f"the workflow exceeds {settings.max_workflow_bytes} bytes (max_workflow_mib)")
    if _has_yaml_aliases(content):
        raise _fail(400, "YAML aliases (*name) are not accepted in an uploaded workflow: write the values out")
    if workflow.exists() and workflow.read_bytes() == content and dag_file.exists():
        return {"dag_id": upload.dag_id, "workflow": str(workflow), "created": False, **_dag_state(upload.dag_id)}
    if workflow.exists() and not upload.overwrite:
        raise _fail(409, f"another workflow is uploaded as {upload.dag_id!r}; set overwrite to replace it")
    workflow.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workflow.parent, prefix=f".{workflow.name}.", suffix=".tmp", delete=False) as staged:
        staged.write(content)
    os.chmod(staged.name, 0o640)  # the step service reads it (group)
    try:
        steps.run("validate", settings, workflow=staged.name)
    except CWLError as err:
        os.unlink(staged.name)
        raise _fail(400, f"invalid CWL: {err.reason}", unsupported=err.unsupported) from None
    except steps.StepError as err:
        os.unlink(staged.name)
        raise _fail(503, str(err), retry=True) from None
    os.replace(staged.name, workflow)
    dag_file.write_text(dag_file_text(upload.dag_id, workflow))
    _parse_now(dag_file)
    return {"dag_id": upload.dag_id, "workflow": str(workflow), "created": True, **_dag_state(upload.dag_id)}


def _gunzip(data: bytes, limit: int) -> bytes | None:
    """The gzip data decompressed, or None when it would exceed limit (never more is inflated)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    content = inflater.decompress(data, limit + 1)
    if len(content) > limit:
        return None
    if not inflater.eof:
        raise zlib.error("incomplete gzip data")
    return content


def _has_yaml_aliases(content: bytes) -> bool:
    """Whether the YAML text uses aliases, which let a few bytes expand to gigabytes (read
    event by event: nothing is expanded)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import AliasEvent

    try:
        return any(isinstance(event, AliasEvent) for event in YAML(typ="safe", pure=True).parse(content))
    except YAMLError:
        return False  # the CWL loader says what is wrong with it


class _InRequestThread(logging.Filter):
    """DagBag's importer sets signal handlers (SIGSEGV, and SIGALRM for its import timeout), which
    only a main thread may; in a request thread it logs a warning and a traceback on every upload,
    which say nothing here (the DAG file is the one the upload wrote)."""

    QUIET = ("SIGSEGV signal handler registration failed", "timeout can't be used in the current context")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(message in record.getMessage() for message in self.QUIET)


logging.getLogger("airflow.dag_processing.importers.python_importer").addFilter(_InRequestThread())


# Airflow's DagContext (the module being imported, the DAGs it registered) is one per process: two
# uploads parsed at once in two request threads took each other's DAGs or failed (KeyError)
_PARSING = threading.Lock()


def _parsed(dag_file: Path):
    """The DagBag of one DAG file, parsed as the DAG processor does; one parse at a time."""
    from airflow.dag_processing.dagbag import DagBag

    with _PARSING:
        bag = DagBag(dag_folder=dag_file, bundle_path=dag_file.parent, bundle_name=BUNDLE)
        for module in [name for name, m in list(sys.modules.items()) if getattr(m, "__file__", None) == str(dag_file)]:
            del sys.modules[module]  # DagBag imported the file as a module; this process needs it no more
    return bag


def _parse_now(dag_file: Path) -> None:
    """Parse the new DAG file here and store its DAG (or its import error) as the DAG processor does.

    The DAG can run as soon as the upload returns, not after the DAG processor's next loop
    (about 1.3 s later, measured); the DAG processor parses the file again in its own time."""
    from airflow.dag_processing.dagbag import sync_bag_to_db

    sync_bag_to_db(_parsed(dag_file), BUNDLE, bundle_version=None)


@app.post(ARCHIVE_ROUTE, status_code=201, dependencies=[Depends(requires_access_dag("POST", access_entity="RUN"))],
          openapi_extra={"requestBody": {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_archive(request: Request) -> dict[str, Any]:
    """Store a tar.gz of input files and folders (once per content); their folder's location.

    Point a job's Files and Directories into that folder. Regular files and folders only."""
    settings = Settings.load()
    chunks = request.stream()

    def body() -> Iterator[bytes]:  # the request's body, read from the worker thread as it arrives
        while (chunk := anyio.from_thread.run(anext, chunks, None)) is not None:
            yield chunk

    try:
        folder = await run_in_threadpool(staging.receive_archive, body(), settings.inputs_folder / "uploads",
                                         settings.max_upload_bytes)
    except staging.ArchiveTooLarge as err:
        raise _fail(413, str(err)) from None
    except staging.ArchiveError as err:
        raise _fail(400, str(err)) from None
    return {"class": "Directory", "location": folder.as_uri()}


@app.post("/workflows/{dag_id}/runs", status_code=201,
          dependencies=[Depends(requires_access_dag("POST", access_entity="RUN"))])
def trigger(dag_id: str, body: Trigger, user: GetUserDep) -> dict[str, Any]:
    """Start a run with {"job": {...}}; when a trigger key is configured, `signature` must sign it."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy.exc import IntegrityError

    settings = Settings.load()
    workflow, _ = _paths(dag_id)
    if not workflow.exists():
        raise _fail(404, f"no workflow {dag_id!r}")
    conf = {"job": body.job}
    run_id = body.run_id
    if settings.trigger_public_key:
        try:
            claims = verify_trigger(body.signature, dag_id, body.run_id, conf, read_key(settings.trigger_public_key),
                                    settings.jwt_algorithm, settings.signature_audience,
                                    settings.max_signature_lifetime)
        except SignatureError as err:
            raise _fail(403, str(err)) from None
        run_id = run_id or f"signed__{claims['jti']}"  # a replay finds its run taken
    try:
        steps.run("check", settings, workflow=str(workflow), job=encode(body.job))
    except CWLError as err:
        raise _fail(400, err.reason) from None
    except steps.StepError as err:
        raise _fail(503, str(err), retry=True) from None
    if not _dag_state(dag_id)["ready"]:
        raise _fail(409, f"the DAG of {dag_id!r} is not parsed yet; retry in a few seconds", retry=True)
    try:
        run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.REST_API, run_id=run_id, conf=conf,
                          triggering_user_name=user.get_name())
    except (DagRunAlreadyExists, IntegrityError):  # IntegrityError: the same run id triggered at the same time
        if settings.trigger_public_key:
            raise _fail(403, f"this signature was used already (run {run_id!r} of {dag_id!r} exists)") from None
        raise _fail(409, f"run {run_id!r} of {dag_id!r} exists") from None
    except DagNotFound:
        raise _fail(409, f"the DAG of {dag_id!r} is not parsed yet; retry in a few seconds", retry=True) from None
    return {"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state)}


def _runs(dag_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    settings = Settings.load()
    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id)
        if run_id is not None:
            query = query.where(DagRun.run_id == run_id)
        runs = session.scalars(query.order_by(DagRun.id)).all()
        tis = session.execute(
            select(TaskInstance.run_id, TaskInstance.task_id, TaskInstance.state)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id.in_([r.run_id for r in runs]))
        ).all()
        result = []
        for run in runs:
            tasks = {t: str(s) if s else None for r, t, s in tis if r == run.run_id}
            failed = sorted(t for t, s in tasks.items() if s in ("failed", "upstream_failed"))
            result.append({
                "dag_id": dag_id, "run_id": run.run_id, "state": str(run.state),
                "progress": 100 if str(run.state) == "success" else reports.percent_done(tasks),
                "tasks": tasks, "failed_tasks": failed,
                "start_date": run.start_date.isoformat() if run.start_date else None,
                "end_date": run.end_date.isoformat() if run.end_date else None,
                "outputs_folder": settings.run_outputs(dag_id, run.run_id).as_uri(),
            })
    return result


@app.get("/workflows/{dag_id}/runs", dependencies=[Depends(requires_access_dag("GET", access_entity="RUN"))])
def list_runs(dag_id: str) -> list[dict[str, Any]]:
    """Runs with their state, progress (percent of finished tasks) and task states."""
    return _runs(dag_id)


@app.get("/workflows/{dag_id}/runs/{run_id}", dependencies=[Depends(requires_access_dag("GET", access_entity="RUN"))])
def get_run(dag_id: str, run_id: str) -> dict[str, Any]:
    runs = _runs(dag_id, run_id)
    if not runs:
        raise _fail(404, f"no run {run_id!r} of {dag_id!r}")
    return runs[0]


@app.get("/workflows/{dag_id}/runs/{run_id}/outputs",
         dependencies=[Depends(requires_access_dag("GET", access_entity="RUN"))])
def get_outputs(dag_id: str, run_id: str) -> dict[str, Any]:
    """The workflow's output object (files are in the run's output folder)."""
    run = get_run(dag_id, run_id)
    outputs = Settings.load().run_outputs(dag_id, run_id) / "outputs.json"
    if run["state"] != "success" or not outputs.exists():
        raise _fail(404, f"run {run_id!r} has no outputs (state {run['state']})", state=run["state"])
    return json.loads(outputs.read_text())


@app.get("/workflows/{dag_id}/runs/{run_id}/outputs/archive", response_class=Response,
         dependencies=[Depends(requires_access_dag("GET", access_entity="RUN"))],
         responses={200: {"content": {"application/gzip": {}}}})
def get_outputs_archive(dag_id: str, run_id: str) -> Response:
    """The run's output files as a tar.gz, names relative to its `outputs_folder`."""
    get_outputs(dag_id, run_id)
    folder = Settings.load().run_outputs(dag_id, run_id)
    return Response(staging.folder_archive(folder, exclude=["outputs.json"]), media_type="application/gzip")


@app.post("/workflows/{dag_id}/runs/{run_id}/stop",
          dependencies=[Depends(requires_access_dag("PUT", access_entity="RUN"))])
def stop_run(dag_id: str, run_id: str) -> dict[str, Any]:
    """Mark the run failed, wait until its tasks (and their containers) ended, remove its tmp data."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    before = get_run(dag_id, run_id)
    settings = Settings.load()
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        if dag is None:
            raise _fail(404, f"no DAG {dag_id!r}")
        updated, killed = set_dag_run_state_to_failed(dag=dag, run_id=run_id, commit=True, session=session)
        # Airflow skips the pending tasks; a skipped leaf reads as success when the scheduler
        # re-evaluates the run from a stale copy. Upstream-failed keeps every evaluation failed.
        for ti in updated:
            if ti.state == TaskInstanceState.SKIPPED:
                ti.set_state(TaskInstanceState.UPSTREAM_FAILED, session=session)
    stopped = sorted({ti.task_id for ti in killed})
    run_tmp = settings.run_tmp(dag_id, run_id)
    deadline = time.monotonic() + settings.stop_timeout
    while busy := _running_steps(run_tmp):
        if time.monotonic() > deadline:
            raise _fail(504, f"tasks still running after {settings.stop_timeout} s: {', '.join(busy)}; "
                        "the run is marked failed, retry the stop to clean up")
        time.sleep(0.5)
    steps.run("clean", settings, dag_id=dag_id, run_id=run_id)
    return {"dag_id": dag_id, "run_id": run_id, "state": "failed", "previous_state": before["state"],
            "stopped_tasks": stopped}


def _running_steps(run_tmp: Path) -> list[str]:
    """Steps whose process still holds its lock file (released when the process is gone)."""
    busy = []
    for lock in sorted((run_tmp / "running").glob("*.lock")):
        with open(lock) as handle:  # the step user's file: readable, not writable
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(lock.stem)
    return busy
