"""cwl-airflow: prepare AIRFLOW_HOME, run workflows through the API, follow and stop runs.

`cwl-airflow run [--outdir DIR] [--quiet] workflow.cwl job.json` speaks the protocol of the
CWL conformance runner cwltest: the output object as JSON on stdout, exit 0 on success, 33
for an unsupported CWL feature, 1 for any other failure.

The API is found at $CWL_AIRFLOW_API (default http://127.0.0.1:8080); credentials come from
$CWL_AIRFLOW_TOKEN, or $CWL_AIRFLOW_USER and $CWL_AIRFLOW_PASSWORD, or (on the appliance,
as root or airflow) the simple auth manager's password file. When the appliance requires signed
triggers, $CWL_AIRFLOW_SIGNING_KEY names the private key (PEM) that signs them.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping, MutableSequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cwl_airflow import staging
from cwl_airflow.config import Settings, read_key

if TYPE_CHECKING:
    from cwl_airflow.workflow import CWLWorkflow

UNSUPPORTED = 33
DEFAULT_API_PORT = 8080
DEFAULT_API = f"http://127.0.0.1:{DEFAULT_API_PORT}"
FINISHED = ("success", "failed")


def poll_waits(quick: float = 0.1, quick_for: float = 3.0, factor: float = 1.25, longest: float = 2.0) -> Iterator[float]:
    """Seconds to sleep between two looks at a run: every `quick` s for its first `quick_for` s
    (most runs of a tool end within a second or two, and each wait adds to the run's time),
    then each wait `factor` times longer, up to `longest` (a long run costs few requests)."""
    waited, wait = 0.0, quick
    while True:
        yield wait
        waited += wait
        if waited >= quick_for:
            wait = min(longest, wait * factor)


class APIError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        self.status, self.detail = status, detail
        reason = detail.get("reason", detail) if isinstance(detail, dict) else detail
        super().__init__(f"HTTP {status}: {reason}")


class Client:
    """A thin client of the /cwl API."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token or self._login()

    def _login(self) -> str:
        user, password = os.environ.get("CWL_AIRFLOW_USER"), os.environ.get("CWL_AIRFLOW_PASSWORD")
        if not (user and password):
            user, password = _appliance_credentials()
        return self._call("POST", "/auth/token", {"username": user, "password": password}, auth=False)["access_token"]

    def _call(self, method: str, path: str, body: Any = None, auth: bool = True,
              content_type: str = "application/json", accept: str = "application/json") -> Any:
        """One request; a JSON answer decoded (other kinds as bytes); APIError for HTTP errors."""
        headers = {"Content-Type": content_type, "Accept": accept}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                payload = response.read()
                return json.loads(payload or b"null") if accept == "application/json" else payload
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                detail = json.loads(payload).get("detail", payload.decode())
            except (ValueError, AttributeError):
                detail = payload.decode(errors="replace")
            raise APIError(err.code, detail) from None

    def upload_archive(self, data: bytes) -> str:
        """Send a tar.gz of input files (see staging); the location of the folder it unpacked to."""
        return self._call("POST", "/cwl/inputs/archive", data, content_type="application/gzip")["location"]

    def outputs_archive(self, dag_id: str, run_id: str) -> bytes:
        return self._call("GET", f"/cwl/workflows/{quote(dag_id)}/runs/{quote(run_id, safe='')}/outputs/archive",
                          accept="application/gzip")

    def upload(self, dag_id: str, content: bytes) -> Any:
        """Upload a CWL document (upstream's format: gzip, then base64)."""
        encoded = base64.b64encode(gzip.compress(content)).decode()
        return self._call("POST", "/cwl/workflows", {"dag_id": dag_id, "workflow_content": encoded})

    def appliance(self) -> Any:
        """What signing a trigger needs: audience, algorithm, longest lifetime."""
        return self._call("GET", "/cwl/appliance")

    def workflow(self, dag_id: str) -> Any:
        return self._call("GET", f"/cwl/workflows/{quote(dag_id)}")

    def trigger(self, dag_id: str, job: dict[str, Any], run_id: str | None = None, signature: str | None = None) -> Any:
        body = {"job": job, "run_id": run_id, "signature": signature}
        return self._call("POST", f"/cwl/workflows/{quote(dag_id)}/runs", body)

    def runs(self, dag_id: str) -> Any:
        return self._call("GET", f"/cwl/workflows/{quote(dag_id)}/runs")

    def run(self, dag_id: str, run_id: str) -> Any:
        return self._call("GET", f"/cwl/workflows/{quote(dag_id)}/runs/{quote(run_id, safe='')}")

    def outputs(self, dag_id: str, run_id: str) -> Any:
        return self._call("GET", f"/cwl/workflows/{quote(dag_id)}/runs/{quote(run_id, safe='')}/outputs")

    def stop(self, dag_id: str, run_id: str) -> Any:
        return self._call("POST", f"/cwl/workflows/{quote(dag_id)}/runs/{quote(run_id, safe='')}/stop")


def _appliance_credentials() -> tuple[str, str]:
    """The first user of the simple auth manager's password file (readable by root and airflow)."""
    default = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "passwords.json"
    path = Path(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", default))
    try:
        user, password = next(iter(json.loads(path.read_text()).items()))
    except (OSError, ValueError, StopIteration):
        raise SystemExit(f"cwl-airflow: no credentials: set CWL_AIRFLOW_TOKEN or CWL_AIRFLOW_USER and "
                         f"CWL_AIRFLOW_PASSWORD (could not read {path})") from None
    return user, password


def _client(args: argparse.Namespace) -> Client:
    return Client(args.api, os.environ.get("CWL_AIRFLOW_TOKEN"))


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


# -- init ----------------------------------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    """Create the CWL folders, a queues.yaml and (unless --no-example) an example workflow DAG."""
    settings = Settings.load()
    created = []
    for folder in settings.folders():
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o750)
            created.append(folder)
    if not settings.queues_file.exists():
        cpus = os.cpu_count() or 1
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        settings.queues_file.write_text(
            "# Celery queues for CWL steps: a step goes to the smallest queue that has its\n"
            "# ResourceRequirement (coresMin, ramMin in MiB); steps without one go to 'default'.\n"
            f"default: {{cpus: {cpus}, ram: {ram}}}\n"
        )
        created.append(settings.queues_file)
    if args.example:
        from airflow.configuration import conf

        workflow = settings.workflows_folder / "cwl_example.cwl"
        dag_file = Path(conf.get("core", "dags_folder")) / "cwl_cwl_example.py"
        if not workflow.exists():
            workflow.write_text(resources.files("cwl_airflow").joinpath("example/hello.cwl").read_text())
            created.append(workflow)
        if not dag_file.exists():
            from cwl_airflow.extensions.cwldag import dag_file_text

            dag_file.parent.mkdir(parents=True, exist_ok=True)
            dag_file.write_text(dag_file_text("cwl_example", workflow))
            created.append(dag_file)
    for path in created:
        print(f"created {path}")
    return 0


# -- run -----------------------------------------------------------------------------------------

def _packed(workflow: CWLWorkflow) -> Any:
    """The document and everything it references ($import, run:, $include) as one document."""
    import cwltool.pack

    # cwltool's pack replaces each object whose id it has seen by an $import of the first one; a
    # tool may give an input and an output one id (cwltool warns and runs it): its output became
    # a copy of its input. Here only an object equal to the first of its id is replaced.
    shared = cwltool.pack.import_embed
    cwltool.pack.import_embed = lambda document, _seen: _import_repeats(document, {})
    try:
        return cwltool.pack.pack(workflow.loading_context, workflow.id)
    finally:
        cwltool.pack.import_embed = shared


def _import_repeats(value: Any, first: dict[str, Any]) -> None:
    """Objects equal to an earlier object of the same id (or name) become an $import of it."""
    if isinstance(value, MutableSequence):
        for item in value:
            _import_repeats(item, first)
    elif isinstance(value, MutableMapping):
        ident = next((value[key] for key in ("id", "name") if isinstance(value.get(key), str)), None)
        if ident is not None and ident in first and first[ident] == value:
            value.clear()
            value["$import"] = ident
            return
        if ident is not None and ident not in first:
            first[ident] = copy.deepcopy(value)
        for key in sorted(value):
            _import_repeats(value[key], first)


def _yaml(document: Any) -> bytes:
    from ruamel.yaml import YAML

    text = io.StringIO()
    yaml = YAML()
    yaml.representer.ignore_aliases = lambda data: True  # the appliance takes no aliases: objects written out
    yaml.dump(document, text)
    return text.getvalue().encode()


def load_job(path: Path | None) -> dict[str, Any]:
    """A job file (JSON or YAML) as cwltool reads it: paths relative to it, $import, namespaces."""
    if path is None:
        return {}
    from cwltool.load_tool import jobloaderctx
    from schema_salad.ref_resolver import Loader, file_uri

    job, _ = Loader(jobloaderctx.copy()).resolve_ref(file_uri(str(path.resolve())), checklinks=False)
    return {k: v for k, v in (job or {}).items() if k != "id"}


def _send_files(client: Client, value: Any, also: Any = None) -> Any:
    """The value with its local files (and those of `also`) sent to the appliance and pointed at there.

    A document's `$schemas` (ontologies that formats are checked against) go along too."""
    from schema_salad.ref_resolver import uri_file_path

    schemas = value.get("$schemas", []) if isinstance(value, dict) else []
    ontologies = [Path(uri_file_path(s)) for s in schemas if s.startswith("file://")]
    data, root = staging.make_archive(staging.local_paths(value) + staging.local_paths(also) + ontologies)
    if not data:
        return value
    location = client.upload_archive(data)
    if schemas:
        value["$schemas"] = [staging.relocate_uri(s, root, location) for s in schemas]
    return staging.relocate(value, root, location)


def submit(client: Client, workflow: CWLWorkflow, defaults: Any = None, say: Any = None) -> str:
    """Upload a workflow (once per content) and wait until its DAG is ready; its dag_id.

    `defaults`: the document's default values as a job has them, with the secondary files
    found beside them, which go along with the document's own files."""
    content = _yaml(_send_files(client, _packed(workflow), also=defaults))
    name = "".join(c if c.isalnum() else "_" for c in workflow.path.stem)[:60]
    dag_id = f"cwl_{name}_{hashlib.sha256(content).hexdigest()[:12]}"
    state = client.upload(dag_id, content)
    deadline = time.monotonic() + 180
    if say and not state.get("ready"):
        say(f"waiting for Airflow to parse {dag_id}")
    while not state.get("ready"):
        if state.get("import_error"):
            raise APIError(400, {"reason": state["import_error"]})
        if time.monotonic() > deadline:
            raise APIError(504, {"reason": f"Airflow did not parse the DAG of {dag_id} within 180 s"})
        time.sleep(0.2)
        state = client.workflow(dag_id)
    return dag_id


def _fetch_outputs(client: Client, dag_id: str, run: dict[str, Any], outdir: Path) -> Any:
    """The run's output object, its files unpacked into outdir and pointed at there."""
    outputs = client.outputs(dag_id, run["run_id"])
    if staging.local_paths(outputs):
        staging.unpack_into(client.outputs_archive(dag_id, run["run_id"]), outdir)
    return staging.relocate(outputs, run["outputs_folder"], outdir.as_uri())


def _signature(client: Client, dag_id: str, conf: dict[str, Any]) -> str | None:
    """A JWT over the trigger, when $CWL_AIRFLOW_SIGNING_KEY names a private key (PEM file).

    Its audience is $CWL_AIRFLOW_AUDIENCE, or else the one the appliance names."""
    path = os.environ.get("CWL_AIRFLOW_SIGNING_KEY")
    if not path:
        return None
    from cwl_airflow.signing import sign_trigger

    facts = client.appliance()
    audience = os.environ.get("CWL_AIRFLOW_AUDIENCE") or facts["audience"]
    return sign_trigger(dag_id, None, conf, audience, read_key(path), facts["jwt_algorithm"],
                        lifetime=min(300, facts["max_signature_lifetime"]))


def cmd_run(args: argparse.Namespace) -> int:
    def say(message: str) -> None:
        _say(args, message)

    try:
        from cwl_airflow import schemas
        from cwl_airflow.workflow import CWL_REQUIREMENTS, CWLError, CWLWorkflow

        schemas.load()
        job_path = Path(args.job) if args.job else None
        workflow = CWLWorkflow(args.workflow)
        given = load_job(job_path)
        # prepared here only to find every file the run needs (secondary files too); the
        # dispatcher prepares the job again, and fills in the defaults from the document
        prepared = workflow.prepare_job(given, job_path.parent if job_path else Path.cwd(), listings=False)
        defaults = {k: v for k, v in prepared.items() if k not in given and k not in CWL_REQUIREMENTS}
        client = _client(args)
        dag_id = submit(client, workflow, defaults, say)
        job = _send_files(client, {k: v for k, v in prepared.items() if k not in defaults})
        signature = _signature(client, dag_id, {"job": job})
        deadline = time.monotonic() + 60
        while True:
            try:
                run = client.trigger(dag_id, job, signature=signature)
                break
            except APIError as err:  # 409 while the scheduler has not seen the new DAG
                if not (err.status == 409 and isinstance(err.detail, dict) and err.detail.get("retry")) \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        say(f"started {dag_id} run {run['run_id']}")
        waits = poll_waits()
        while run["state"] not in FINISHED:
            time.sleep(next(waits))
            run = client.run(dag_id, run["run_id"])
        if run["state"] != "success":
            print(f"cwl-airflow: run {run['run_id']} of {dag_id} failed; failed tasks: "
                  f"{', '.join(run.get('failed_tasks', [])) or 'none'} (see their logs in Airflow)", file=sys.stderr)
            return 1
        outputs = _fetch_outputs(client, dag_id, run, Path(args.outdir).resolve())
    except CWLError as err:
        print(f"cwl-airflow: {err.reason}", file=sys.stderr)
        return UNSUPPORTED if err.unsupported else 1
    except APIError as err:
        print(f"cwl-airflow: {err}", file=sys.stderr)
        unsupported = isinstance(err.detail, dict) and err.detail.get("unsupported")
        return UNSUPPORTED if unsupported else 1
    except (OSError, ValueError) as err:
        print(f"cwl-airflow: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # cwltool's own errors while packing the workflow
        from cwltool.errors import UnsupportedRequirement

        print(f"cwl-airflow: {err}", file=sys.stderr)
        return UNSUPPORTED if isinstance(err, UnsupportedRequirement) else 1
    print(json.dumps(outputs, indent=2))
    return 0


# -- status / stop -------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        if args.run_id:
            result = client.run(args.dag_id, args.run_id)
        elif args.dag_id:
            result = client.runs(args.dag_id)
        else:
            result = client._call("GET", "/cwl/workflows")
    except APIError as err:
        print(f"cwl-airflow: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        print(json.dumps(_client(args).stop(args.dag_id, args.run_id), indent=2))
    except APIError as err:
        print(f"cwl-airflow: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_reporter(args: argparse.Namespace) -> int:
    """Deliver queued reports until stopped (the cwl-airflow-reporter service)."""
    from cwl_airflow.reports import deliver_forever

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings.load(use_airflow=False)
    deliver_forever(settings.reports_folder, read_key(settings.report_private_key), settings.jwt_algorithm)
    return 0


def cmd_step_server(args: argparse.Namespace) -> int:
    from cwl_airflow import steps

    return steps.serve(args.socket)


def cmd_docker_proxy(args: argparse.Namespace) -> int:
    from cwl_airflow import docker_proxy

    return docker_proxy.serve(args.allow, args.allow_read_only, args.engine, args.socket)


def cmd_user_unit(args: argparse.Namespace) -> int:
    from cwl_airflow import user_unit
    from cwl_airflow.up import UpError

    try:
        print(user_unit.install(args.port, args.start, args.no_container))
    except UpError as err:
        print(f"cwl-airflow user-unit: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from cwl_airflow import up

    try:
        return up.run(args.port, args.no_container)
    except up.UpError as err:
        print(f"cwl-airflow up: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cwl-airflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("CWL_AIRFLOW_API", DEFAULT_API),
                        help=f"Airflow's API server (default: $CWL_AIRFLOW_API or {DEFAULT_API})")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="prepare AIRFLOW_HOME for CWL: folders, queues.yaml, an example")
    init.add_argument("--no-example", dest="example", action="store_false", help="no example workflow DAG")
    init.set_defaults(func=cmd_init)
    run = sub.add_parser("run", help="run a workflow through the API and print its outputs (cwltest protocol)")
    run.add_argument("--outdir", default=".", help="where to put the output files (default: .)")
    run.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    run.add_argument("workflow")
    run.add_argument("job", nargs="?")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="workflows, a workflow's runs, or one run")
    status.add_argument("dag_id", nargs="?")
    status.add_argument("run_id", nargs="?")
    status.set_defaults(func=cmd_status)
    stop = sub.add_parser("stop", help="stop a run: its tasks and containers end, its tmp data is removed")
    stop.add_argument("dag_id")
    stop.add_argument("run_id")
    stop.set_defaults(func=cmd_stop)
    reporter = sub.add_parser("reporter", help="deliver queued reports (run by the cwl-airflow-reporter service)")
    reporter.set_defaults(func=cmd_reporter)
    step_server = sub.add_parser("step-server", help="run CWL steps for Airflow's daemons "
                                 "(the cwl-airflow-step service, as the step user)")
    step_server.add_argument("--socket", help="listen here (default: the socket systemd passes)")
    step_server.set_defaults(func=cmd_step_server)
    proxy = sub.add_parser("docker-proxy", help="the Docker API as CWL steps may use it "
                           "(the cwl-airflow-docker service)")
    proxy.add_argument("--allow", action="append", default=[], help="a folder steps may bind-mount read-write")
    proxy.add_argument("--allow-read-only", action="append", default=[],
                       help="a folder steps may bind-mount read-only")
    proxy.add_argument("--engine", default="/var/run/docker.sock", help="the Docker engine's socket")
    proxy.add_argument("--socket", help="listen here (default: the socket systemd passes)")
    proxy.set_defaults(func=cmd_docker_proxy)
    up = sub.add_parser("up", help="Airflow and the CWL API for one user, in the foreground (the portable bundle)")
    up.set_defaults(func=cmd_up)
    unit = sub.add_parser("user-unit", help="run `up` as a systemd user service (~/.config/systemd/user)")
    for command in (up, unit):
        command.add_argument("--port", type=int, default=DEFAULT_API_PORT,
                             help=f"the API server's port on 127.0.0.1 (default: {DEFAULT_API_PORT})")
        command.add_argument("--no-container", action="store_true",
                             help="run every tool on this machine, none in a container (cwltool's --no-container); "
                                  "by default Docker where this user may use it, else Podman")
    unit.add_argument("--no-start", dest="start", action="store_false", help="write the unit only")
    unit.set_defaults(func=cmd_user_unit)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command == "run":  # cwltest passes options of its own runner (e.g. --debug)
        logging.getLogger(__name__).debug("ignored options: %s", unknown)
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
