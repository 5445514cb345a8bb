"""A run's CWL work (checking a job, a step, gathering the outputs, removing tmp data), and
where it is done.

Everything that evaluates a workflow's expressions or runs its tools is an operation here,
called with JSON-able arguments. `[cwl] step_socket` chooses where it runs:
- empty: in the calling process (one user owns everything: the portable bundle, unit tests);
- a socket path: in the step service (`cwl-airflow step-server`, run by systemd as the step
  user), which reads no secret of Airflow's, is in no privileged group, and reaches Docker
  only through the filtering proxy (`cwl_airflow.docker_proxy`). Airflow's daemons only
  send the request, relay its log lines and take the result.

The service forks one child per connection (cwltool is imported once, before); a child whose
caller goes away (the task was stopped, its process died) kills its containers and processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil
from cwltool.argparser import arg_parser
from cwltool.context import RuntimeContext
from schema_salad.ref_resolver import uri_file_path

from cwl_airflow.config import Settings
from cwl_airflow.staging import file_under, files_in
from cwl_airflow.workflow import CWLError, CWLWorkflow, decode, encode, job_requirements

CWLTOOL_PREFIX = "http://commonwl.org/cwltool#"
LISTEN_FD = 3  # the first socket systemd passes (sd_listen_fds)
log = logging.getLogger(__name__)
relayed = logging.getLogger("cwl_airflow.step")  # what the step service logs, in the caller's log


class StepError(Exception):
    """An operation failed in the step service; the message is its reason."""


@lru_cache(maxsize=8)
def _workflow(path: str, mtime: float, requirements: str, formats: bool) -> CWLWorkflow:
    return CWLWorkflow(path, json.loads(requirements), formats=formats)


def load_workflow(path: str, job: dict[str, Any] | None = None, formats: bool = True) -> CWLWorkflow:
    """The workflow (with the job's `cwl:requirements`), loaded once per process and file version;
    `formats=False` for its structure only (see CWLWorkflow)."""
    return _workflow(path, os.stat(path).st_mtime, json.dumps(job_requirements(job or {})), formats)


def _cwltool_options(settings: Settings) -> RuntimeContext:
    """cwltool's runtime options as configured: the container engine's, then cwltool_options."""
    engine = ["--podman"] if settings.container_engine == "podman" else []
    args = arg_parser().parse_args([*engine, *shlex.split(settings.cwltool_options), "unused.cwl"])
    return RuntimeContext(vars(args))


def _runtime(settings: Settings, outdir: Path, run_tmp: Path, prefix: str) -> RuntimeContext:
    """cwltool's runtime options: the configured ones, then the folders of this run."""
    runtime = _cwltool_options(settings)
    runtime.outdir = str(outdir)
    runtime.tmpdir_prefix = str(run_tmp / "tmp" / prefix) + "-"
    runtime.tmp_outdir_prefix = str(run_tmp / "tmp" / prefix) + "-out-"
    runtime.cidfile_dir = str(run_tmp / "cid")
    runtime.cidfile_prefix = prefix
    runtime.record_container_id = True
    runtime.move_outputs = "move"
    for folder in ("cid", "tmp"):
        (run_tmp / folder).mkdir(parents=True, exist_ok=True)
    return runtime


def check_job(wf: CWLWorkflow, job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The job prepared for a run; CWLError when it is invalid or names files it may not use.

    A job may name files (after links are followed) under the inputs folder and the
    operator's data roots only, and http(s) inputs only where the operator allows them: a
    trigger must not make a tool read the workers' own files (Airflow's secrets)."""
    job = wf.prepare_job(job, settings.inputs_folder)
    roots = (settings.inputs_folder, *settings.data_roots)
    refused, missing = [], []
    for item in files_in(job):
        location = item.get("location", "")
        if location.startswith("file://"):
            if not file_under(location, roots):
                refused.append(location)
            elif not Path(uri_file_path(location)).exists():
                missing.append(location)
        elif location.startswith(("http://", "https://")) and not settings.http_inputs:
            refused.append(location)
    if refused:
        raise CWLError("inputs outside the inputs folder and the data roots (data_roots, http_inputs): "
                       + ", ".join(sorted(set(refused))))
    if missing:
        raise CWLError("input files not found: " + ", ".join(missing))
    return job


def strip_cwltool_keys(value: Any) -> Any:
    """Output objects without cwltool's private keys (e.g. cwltool#generation)."""
    if isinstance(value, dict):
        return {k: strip_cwltool_keys(v) for k, v in value.items() if not k.startswith(CWLTOOL_PREFIX)}
    if isinstance(value, list):
        return [strip_cwltool_keys(v) for v in value]
    return value


def _readable_by_group(folder: Path) -> None:
    """Let the step group (Airflow's daemons) read what the step user wrote: cwltool makes
    its folders 0700 and moves them into the outputs as they are."""
    for path in (folder, *folder.rglob("*")):
        if not path.is_symlink() and path.stat().st_uid == os.geteuid():
            mode = path.stat().st_mode
            path.chmod(mode | (0o050 if path.is_dir() else 0o040))


# The operations. CWL values travel as the workflow module's JSON text (floats kept as written).

def validate(settings: Settings, workflow: str) -> None:
    """CWLError unless the uploaded document is valid CWL that reads nothing but itself and
    the uploaded files (in the step service: within VALIDATION_LIMITS)."""
    CWLWorkflow(workflow, confined_to=(settings.inputs_folder / "uploads",))


NO_CONTAINER_ENGINE = (
    "a tool requires a container (DockerRequirement), and there is no container engine this platform's "
    "user may use: install Docker (and join its group docker) or Podman, then start the platform again; "
    "or run the tools on this machine without containers (cwltool's --no-container: `cwl-airflow up --no-container`)")


def check(settings: Settings, workflow: str, job: str) -> str:
    """The job prepared as the run will see it (CWLError: why it is refused)."""
    values = decode(job)
    wf = load_workflow(workflow, values)
    if settings.container_engine == "none" and _cwltool_options(settings).use_container and wf.requires_container():
        raise CWLError(NO_CONTAINER_ENGINE)
    return encode(check_job(wf, values, settings))


def dispatch(settings: Settings, workflow: str, job: str, dag_id: str, run_id: str) -> str:
    prepared = check(settings, workflow, job)
    settings.run_tmp(dag_id, run_id).mkdir(parents=True, exist_ok=True)
    return prepared


def step(settings: Settings, workflow: str, job: str, finished: dict[str, str], dag_id: str, run_id: str,
         step_name: str, task_id: str) -> str:
    values = decode(job)
    wf = load_workflow(workflow, values)
    run_tmp = settings.run_tmp(dag_id, run_id)
    runtime = _runtime(settings, run_tmp / "steps" / task_id, run_tmp, task_id)
    # held while this process lives: a stop waits until it can take it
    (run_tmp / "running").mkdir(parents=True, exist_ok=True)
    with open(run_tmp / "running" / f"{task_id}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return encode(wf.run_step(step_name, values, {k: decode(v) for k, v in finished.items()}, runtime))


def gather(settings: Settings, workflow: str, job: str, finished: dict[str, str], dag_id: str,
           run_id: str) -> str:
    """The workflow's outputs moved into the run's output folder; the tmp data removed."""
    values = decode(job)
    wf = load_workflow(workflow, values)
    run_tmp = settings.run_tmp(dag_id, run_id)
    outdir = settings.run_outputs(dag_id, run_id)
    outputs = strip_cwltool_keys(wf.gather(values, {k: decode(v) for k, v in finished.items()},
                                           _runtime(settings, outdir, run_tmp, "gather")))
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "outputs.json").write_text(json.dumps(outputs, indent=2))
    _readable_by_group(outdir)
    if not settings.keep_tmp_data:
        clean(settings, dag_id, run_id)
    return encode(outputs)


def run_alone(settings: Settings, workflow: str, job: str, dag_id: str, run_id: str, step_name: str,
              task_id: str) -> str:
    """A workflow of one step (a tool) in one operation: dispatch, its step, gather."""
    prepared = dispatch(settings, workflow, job, dag_id, run_id)
    result = step(settings, workflow, prepared, {}, dag_id, run_id, step_name, task_id)
    return gather(settings, workflow, prepared, {step_name: result}, dag_id, run_id)


def clean(settings: Settings, dag_id: str, run_id: str) -> None:
    """Remove a run's tmp data (and the workflow's tmp folder once its last run is gone)."""
    run_tmp = settings.run_tmp(dag_id, run_id)
    shutil.rmtree(run_tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_tmp.parent.rmdir()


OPERATIONS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (validate, check, dispatch, step, gather, run_alone, clean)}
# what validating an upload may take in the step service: CPU seconds, bytes of memory
VALIDATION_LIMITS = (60, 2 << 30)


def kill_step(settings: Settings, arguments: dict[str, Any]) -> None:
    """A step's containers (cwltool records their ids) and cwltool's processes, killed."""
    from cwltool.utils import processes_to_kill

    if "task_id" in arguments:
        cid_folder = settings.run_tmp(arguments["dag_id"], arguments["run_id"]) / "cid"
        for cidfile in glob.glob(str(cid_folder / f"{glob.escape(arguments['task_id'])}-*.cid")):
            cid = Path(cidfile).read_text().strip()
            if cid:
                subprocess.run(["docker", "kill", cid], capture_output=True, check=False)
    while processes_to_kill:
        process = processes_to_kill.popleft()
        if process.poll() is None:
            process.kill()


# Where operations run

def run(operation: str, settings: Settings | None = None, **arguments: Any) -> Any:
    """Do an operation where the settings say: here, or in the step service."""
    settings = settings or Settings.load()
    if not settings.step_socket:
        return OPERATIONS[operation](settings, **arguments)
    return _call_service(settings.step_socket, operation, arguments)


def _call_service(path: str, operation: str, arguments: dict[str, Any]) -> Any:
    """Send the request, log what the service logs, return its result (or raise its error).
    Closing the connection (this process ends, or is stopped) ends the operation."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(path)
        except OSError as err:
            raise StepError(f"the step service at {path} cannot be reached: {err.strerror}") from None
        conn.sendall(json.dumps({"operation": operation, "arguments": arguments}).encode() + b"\n")
        with conn.makefile("rb") as answers:
            for line in answers:
                answer = json.loads(line)
                if "log" in answer:  # one logger: the caller's own cwltool logger would print it twice
                    relayed.log(answer["level"], "%s", answer["log"])
                elif "error" in answer and answer["kind"] == "CWLError":
                    raise CWLError(answer["error"], answer.get("unsupported", False))
                elif "error" in answer:
                    raise StepError(answer["error"])
                else:
                    return answer.get("result")
    raise StepError(f"the step service ended {operation} without an answer (see its journal)")


class _Relay(logging.Handler):
    """Log records sent to the caller as JSON lines."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.send({"log": self.format(record), "level": record.levelno})


def _serve_one(conn: socket.socket, settings: Settings) -> None:
    """One request, in a forked child: its logs and its tools' output go back to the caller."""
    os.setpgid(0, 0)
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            conn.sendall(json.dumps(message).encode() + b"\n")

    with conn.makefile("rb") as requests:
        request = json.loads(requests.readline() or "{}")
    operation, arguments = request.get("operation"), request.get("arguments") or {}
    relay = _Relay(send)
    relay.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    for logger in (root, logging.getLogger("cwltool")):  # the service's journal handlers, and cwltool's own
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()
    root.addHandler(relay)
    root.setLevel(logging.INFO)
    _relay_output(send)

    # Whoever takes it ends this process: the watcher never lets go (it ends with SIGKILL to the
    # group), so a request whose tool it just killed cannot return and exit before the group is killed.
    ending = threading.Lock()

    def watch() -> None:  # the caller hung up: stop everything this request started
        with contextlib.suppress(OSError):
            while conn.recv(1):
                pass
        ending.acquire()
        try:
            kill_step(settings, arguments)
        finally:  # whatever that met, nothing the request started may stay
            for child in psutil.Process().children(recursive=True):  # also any that left the group
                with contextlib.suppress(psutil.Error):
                    child.kill()
            os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    if operation == "validate":
        _limit(*VALIDATION_LIMITS)
    try:
        _answer(send, settings, operation, arguments)
    finally:
        ending.acquire()


def _answer(send: Callable[[dict[str, Any]], None], settings: Settings, operation: str,
            arguments: dict[str, Any]) -> None:
    """Do the operation; send its result, or its error with the reason."""
    try:
        if operation not in OPERATIONS:
            raise StepError(f"unknown operation {operation!r}")
        if "workflow" in arguments and not Path(arguments["workflow"]).resolve().is_relative_to(
                settings.workflows_folder.resolve()):
            raise StepError(f"the workflow must be in {settings.workflows_folder}")
        send({"result": OPERATIONS[operation](settings, **arguments)})
    except CWLError as err:
        send({"error": err.reason, "kind": "CWLError", "unsupported": err.unsupported})
    except MemoryError:
        send({"error": f"{operation} needed more than {VALIDATION_LIMITS[1] >> 20} MiB", "kind": "CWLError"})
    except Exception as err:  # any failure is the caller's task failing, with the reason
        log.exception("%s failed", operation)
        send({"error": f"{type(err).__name__}: {err}", "kind": type(err).__name__})


def _limit(cpu_seconds: int, memory_bytes: int) -> None:
    """Bound this process: past the CPU time it fails with CWLError, past the memory with MemoryError."""
    def out_of_time(*_: Any) -> None:
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # the kernel repeats it each second
        raise CWLError(f"took more than {cpu_seconds} s of CPU time")

    signal.signal(signal.SIGXCPU, out_of_time)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _relay_output(send: Callable[[dict[str, Any]], None]) -> None:
    """What tools and cwltool write to stdout and stderr, relayed line by line."""
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def relay() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                with contextlib.suppress(Exception):
                    send({"log": line.decode(errors="replace").rstrip("\n"), "level": logging.INFO})

    threading.Thread(target=relay, daemon=True).start()


def serve(path: str | None = None) -> int:
    """The step service: the socket systemd passes (or one bound at `path`), a child per request."""
    settings = Settings.load(use_airflow=False)
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
    elif os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
        listener = socket.socket(fileno=LISTEN_FD)
    else:
        print("step-server: no socket: run it from its systemd socket or give --socket PATH", file=sys.stderr)
        return 2
    from cwl_airflow.preload import warm_up

    warm_up()  # cwltool and the CWL schemas loaded once: every child starts with both

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.info("step service of %s ready", settings.workflows_folder)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _serve_one(conn, settings)
            finally:
                os._exit(0)
        conn.close()
