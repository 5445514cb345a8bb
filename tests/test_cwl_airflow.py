"""cwl-airflow on the provisioned appliance: workflows through the API, Celery and Docker;
signed triggers and reports; stopping a run; `cwl-airflow run` as a cwltest runner."""

from __future__ import annotations

import base64
import gzip
import json
import time
import urllib.parse
import uuid

import jwt
import pytest

import conftest
from conftest import CWL, REPORT_PORT, put_file
from cwl_airflow.cli import APIError, Client
from testhosts.conformance import INSTALL_CWLTEST

OUTBOX = "/var/lib/cwl-airflow/reports"
RECEIVER = f"""
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("/root/reports.jsonl", "a") as out:
            out.write(json.dumps({{"path": self.path, "body": json.loads(body)}}) + "\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", {REPORT_PORT}), Handler).serve_forever()
"""
ADMIN_PASSWORD = "/var/lib/airflow/passwords.json"  # user airflow's (the API server's) to read


def signed(cwl, cwl_keys, dag_id, conf, run_id=None, key=None, lifetime=60, drop=(), **claims):
    """A trigger's JWT as a client makes it (claims changed by keyword, or dropped)."""
    now = int(time.time())
    body = {"dag_id": dag_id, "run_id": run_id, "conf": conf, "aud": cwl.appliance()["audience"], "iat": now,
            "exp": now + lifetime, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode({k: v for k, v in body.items() if k not in drop}, key or cwl_keys.trigger_private,
                      algorithm="RS256")


@pytest.fixture(scope="module")
def cwl(airflow):
    """A client of the /cwl API (same tunnel and token as the Airflow client)."""
    return Client(airflow.url, airflow.token())


def upload(cwl, name: str, dag_id: str | None = None, content: bytes | None = None):
    dag_id = dag_id or f"test_{name.replace('-', '_').removesuffix('.cwl')}"
    cwl.upload(dag_id, content or (CWL / name).read_bytes())
    deadline = time.monotonic() + 120
    while not cwl.workflow(dag_id)["ready"]:
        assert time.monotonic() < deadline, f"{dag_id} not parsed"
        time.sleep(0.5)
    return dag_id


def run(cwl, cwl_keys, dag_id, job, timeout=180):
    conf = {"job": job}
    started = cwl.trigger(dag_id, job, signature=signed(cwl, cwl_keys, dag_id, conf))
    deadline = time.monotonic() + timeout
    state = cwl.run(dag_id, started["run_id"])
    while state["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
        state = cwl.run(dag_id, started["run_id"])
    return state


@pytest.fixture(scope="module")
def receiver(host):
    """A report receiver on the appliance host, as a transient unit; yields its log reader."""
    put_file(host, "/root/receiver.py", RECEIVER.encode())

    class Receiver:
        def start(self):
            host.run_expect([0], "systemd-run --unit=report-receiver python3 /root/receiver.py")
            host.run_expect([0], f"timeout 10 sh -c 'until bash -c \"</dev/tcp/127.0.0.1/{REPORT_PORT}\"; do sleep 0.2; done'")

        def stop(self):
            host.run("systemctl stop report-receiver")

        def reports(self, run_id=None):
            text = host.run("cat /root/reports.jsonl").stdout
            items = [json.loads(line) for line in text.splitlines() if line]
            return [r for r in items if run_id is None or
                    jwt.decode(r["body"]["payload"], options={"verify_signature": False})["run_id"] == run_id]

    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


def test_services_and_configuration(host):
    reporter = host.service("cwl-airflow-reporter")
    assert reporter.is_enabled and reporter.is_running
    pid = host.check_output("systemctl show -P MainPID cwl-airflow-reporter")
    assert host.check_output("ps -o user= -p %s", pid) == "airflow"
    for unit in ("airflow-worker", "airflow-api-server", "airflow-scheduler"):
        assert "/etc/airflow/cwl-airflow.env" in host.check_output("systemctl show -P EnvironmentFiles %s", unit)
    env = host.file("/etc/airflow/cwl-airflow.env")
    assert (env.user, env.group, env.mode) == ("root", "airflow", 0o640)
    key = host.file("/etc/airflow/cwl-report-private.pem")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert "AIRFLOW__CWL__REPORT_PRIVATE_KEY" not in env.content_string  # the reporter's alone
    assert host.run("setpriv --reuid=airflow --regid=airflow --clear-groups cat %s", key.path).rc != 0
    for unit in ("cwl-airflow-reporter.service", "cwl-airflow-step.socket", "cwl-airflow-step.service",
                 "cwl-airflow-docker.socket", "cwl-airflow-docker.service"):
        assert host.run("systemd-analyze verify /etc/systemd/system/%s", unit).stderr.strip() == "", unit
    step = host.check_output("systemctl show -P MainPID cwl-airflow-step")
    assert host.check_output("ps -o user= -p %s", step) == "cwl-step"
    assert host.file("/run/cwl-airflow/step.sock").group == "airflow"
    assert host.file("/run/cwl-airflow/docker.sock").group == "cwl-step"
    assert host.check_output("sudo -u airflow cwl-airflow status") .startswith("[")


def test_an_upload_returns_a_ready_dag_and_forking_daemons_start_warm(host, cwl):
    """The upload stores the new DAG itself (no wait for the DAG processor's next loop), and the
    daemons that fork per DAG file or task have cwltool loaded before they fork (its compiled
    schema-salad modules are mapped in their main process)."""
    content = (CWL / "trivial.cwl").read_bytes() + f"# {time.time_ns()}\n".encode()
    dag_id = f"test_ready_{time.time_ns()}"
    try:
        state = cwl.upload(dag_id, content)
        assert state["created"] and state["ready"], state
    finally:
        host.run(f"rm -f /var/lib/airflow/dags/cwl_{dag_id}.py /var/lib/cwl-airflow/workflows/{dag_id}.cwl")
    for unit in ("airflow-dag-processor", "airflow-worker"):
        pid = host.check_output(f"systemctl show -P MainPID {unit}")
        assert "schema_salad" in host.check_output(f"cat /proc/{pid}/maps"), unit


def test_three_docker_steps_through_the_api(host, cwl, cwl_keys, airflow):
    dag_id = upload(cwl, "three-step.cwl")
    result = run(cwl, cwl_keys, dag_id, {"name": "appliance"})
    assert result["state"] == "success", result
    assert result["tasks"] == dict.fromkeys(["CWLJobDispatcher", "CWLJobGatherer", "count", "greet", "shout"], "success")
    assert result["progress"] == 100
    outputs = cwl.outputs(dag_id, result["run_id"])
    assert outputs["shouted"]["basename"] == "upper.txt"
    assert host.file(local(outputs["shouted"])).content_string == "HELLO APPLIANCE\n"
    assert host.file(local(outputs["length"])).content_string.strip() == "16"
    # the steps ran in Docker, each as its own Airflow task on the Celery worker
    log = host.check_output("cat /var/lib/airflow/logs/dag_id=%s/run_id=%s/task_id=shout/*.log", dag_id, result["run_id"])
    assert "docker" in log and "appliance-test/busybox:latest" in log
    # tmp data is removed after success
    assert not host.file(f"/var/lib/cwl-airflow/tmp/{dag_id}/{result['run_id']}").exists


def test_cwl_features_and_queue_by_resources(cwl, cwl_keys, airflow):
    dag_id = upload(cwl, "features.cwl")
    result = run(cwl, cwl_keys, dag_id, {"words": ["a", "b"], "shout": True})
    assert result["state"] == "success", result
    assert cwl.outputs(dag_id, result["run_id"]) == {"echoed": ["a!", "b!"], "shouted": "A!", "joined": "a! b!"}
    result = run(cwl, cwl_keys, dag_id, {"words": ["x"]})  # `when` false: upper is skipped by cwltool
    assert cwl.outputs(dag_id, result["run_id"]) == {"echoed": ["x!"], "shouted": None, "joined": "x!"}
    queues = {t["task_id"]: t["queue"] for t in airflow.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{result['run_id']}/taskInstances")["task_instances"]}
    assert queues["join"] == "big"  # its subworkflow's step needs coresMin 2
    assert queues["echo"] == "default"


def local(file: dict) -> str:
    """The path on the appliance of a File in an output object."""
    return urllib.parse.unquote(file["location"].removeprefix("file://"))


def expect_error(call, status):
    with pytest.raises(APIError) as err:
        call()
    assert err.value.status == status, err.value.detail
    return err.value.detail["reason"]


def test_bad_input_gets_a_4xx_with_the_reason_and_leaves_nothing(host, cwl, cwl_keys):
    before = host.check_output("ls /var/lib/airflow/dags /var/lib/cwl-airflow/workflows")
    reason = expect_error(lambda: cwl.upload("test_broken", (CWL / "broken.cwl").read_bytes()), 400)
    assert "nowhere/out" in reason
    assert expect_error(lambda: cwl._call("POST", "/cwl/workflows", {"dag_id": "x", "workflow_content": "%%"}), 400)
    assert "dag_id" in expect_error(lambda: cwl.upload("../etc", b"cwlVersion: v1.2"), 400)
    assert host.check_output("ls /var/lib/airflow/dags /var/lib/cwl-airflow/workflows") == before

    dag_id = upload(cwl, "three-step.cwl")
    runs = len(cwl.runs(dag_id))
    assert "name" in expect_error(lambda: cwl.trigger(dag_id, {}, signature=signed(cwl, cwl_keys, dag_id, {"job": {}})), 400)
    expect_error(lambda: cwl.trigger("test_no_such_workflow", {"name": "x"}), 404)
    assert len(cwl.runs(dag_id)) == runs


def test_only_the_uploaders_may_upload(host, cwl, airflow):
    """Role USER may edit DAGs under the simple auth manager; a workflow is code for the workers,
    so uploading one also needs a name in uploaders (here the admin's only). The USER's token is
    made as the API server makes them (its claims, signed with its JWT secret)."""
    admin = airflow.token()
    secret = conftest.secret(host, "jwt_secret")
    claims = {**jwt.decode(admin, options={"verify_signature": False}), "sub": "alice", "role": "user",
              "jti": uuid.uuid4().hex}
    alice = Client(airflow.url, jwt.encode(claims, secret, algorithm=jwt.get_unverified_header(admin)["alg"]))
    assert isinstance(alice._call("GET", "/cwl/workflows"), list)  # a valid token, with DAG rights
    before = host.check_output("ls /var/lib/airflow/dags /var/lib/cwl-airflow/workflows")
    reason = expect_error(lambda: alice.upload("test_by_alice", (CWL / "trivial.cwl").read_bytes()), 403)
    assert "uploaders" in reason
    assert host.check_output("ls /var/lib/airflow/dags /var/lib/cwl-airflow/workflows") == before


def test_hostile_uploads_get_a_4xx_that_reveals_nothing(host, cwl, airflow):
    """Uploads that would read the server's files or services, or exhaust its memory, are refused
    quickly; no answer holds a secret, no DAG is made, the API stays healthy."""
    values = [conftest.secret(host, name) for name in host.check_output("ls %s", conftest.SECRETS).split()]
    secrets = [urllib.parse.urlsplit(v).password if "@" in v else v for v in values]  # database, broker URLs
    secrets.append(json.loads(host.file(ADMIN_PASSWORD).content_string)["admin"])
    assert len(secrets) >= 7 and all(len(s) >= 12 for s in secrets)
    # the files with secrets that the API server's user can read: the admin's password, its credentials
    own_secret = "/run/credentials/airflow-api-server.service/jwt_secret"
    tool = "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: echo\ninputs: []\noutputs: []\n"
    step = ("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
            "steps:\n  s:\n    run: {run}\n    in: []\n    out: []\n")
    hostile = {
        "import": step.format(run=f"{{$import: {ADMIN_PASSWORD}}}"),
        "run": step.format(run=own_secret),
        "include": tool + f"doc: {{$include: {own_secret}}}\n",
        "ssrf": tool + "doc: {$include: 'http://127.0.0.1:8080/api/v2/version'}\n",
        "aliases": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)),
    }
    before = host.check_output("ls /var/lib/airflow/dags /var/lib/cwl-airflow/workflows")
    for name, document in hostile.items():
        started = time.monotonic()
        with pytest.raises(APIError) as refused:
            cwl.upload(f"test_hostile_{name}", document.encode())
        assert refused.value.status == 400, (name, refused.value)
        assert time.monotonic() - started < (1 if name == "aliases" else 5), name  # a bomb: at once
        assert not any(secret in str(refused.value.detail) for secret in secrets), name
    bomb = base64.b64encode(gzip.compress(b"\0" * (256 << 20))).decode()  # 256 MiB in 340 KiB of base64
    started = time.monotonic()
    status = expect_error(lambda: cwl._call("POST", "/cwl/workflows", {"dag_id": "test_bomb", "workflow_content": bomb}),
                          413)
    assert "max_workflow_mib" in status and time.monotonic() - started < 1
    assert host.check_output("ls /var/lib/airflow/dags /var/lib/cwl-airflow/workflows") == before
    assert isinstance(cwl._call("GET", "/cwl/workflows"), list)  # healthy


def test_a_job_cannot_name_the_workers_files(host, cwl, cwl_keys):
    """An input at the admin's password file (or a link to it from the inputs folder) is refused
    before anything runs: a tool that prints its input would print it."""
    dag_id = "test_cat"
    cwl.upload(dag_id, b"cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\n"
                       b"inputs: {f: {type: File, inputBinding: {}}}\noutputs: {out: stdout}\n")
    host.run_expect([0], f"ln -sfn {ADMIN_PASSWORD} /var/lib/cwl-airflow/inputs/env-link")
    try:
        runs = len(cwl.runs(dag_id))
        for location in (f"file://{ADMIN_PASSWORD}", ADMIN_PASSWORD, "env-link", f"../../../..{ADMIN_PASSWORD}"):
            job = {"f": {"class": "File", "location": location}}
            reason = expect_error(lambda: cwl.trigger(dag_id, job, signature=signed(cwl, cwl_keys, dag_id,
                                                                                    {"job": job})), 400)
            assert "outside the inputs folder" in reason, (location, reason)
        assert len(cwl.runs(dag_id)) == runs
    finally:
        host.run("rm -f /var/lib/cwl-airflow/inputs/env-link")


PROBE = b"""cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
arguments:
  - >-
    id; cat /var/lib/airflow/passwords.json; echo passwords=$?;
    cat /etc/airflow/credentials/fernet_key; echo credentials=$?;
    docker ps; echo docker=$?;
    DOCKER_HOST=unix:///run/cwl-airflow/docker.sock docker ps; echo proxy=$?
inputs: {}
outputs: {out: stdout}
stdout: probe.txt
"""


def test_steps_run_as_the_step_user_without_secrets_or_docker(host, cwl, cwl_keys):
    """A tool on the host is the step user: not airflow, in no docker group, unable to read
    Airflow's secrets or to list the engine's containers (directly or through the proxy)."""
    dag_id = upload(cwl, "probe", dag_id="test_probe", content=PROBE)
    result = run(cwl, cwl_keys, dag_id, {})
    assert result["state"] == "success", result
    probe = host.file(local(cwl.outputs(dag_id, result["run_id"])["out"])).content_string
    identity = probe.splitlines()[0]
    assert "(cwl-step)" in identity and "airflow" not in identity and "docker" not in identity, identity
    for secret in (conftest.secret(host, "fernet_key"), json.loads(host.file(ADMIN_PASSWORD).content_string)["admin"]):
        assert secret and secret not in probe
    for check in ("passwords", "credentials", "docker", "proxy"):
        assert f"{check}=" in probe and f"{check}=0" not in probe, probe


def step_docker(host, args: str):
    return host.run(f"runuser -u cwl-step -- env DOCKER_HOST=unix:///run/cwl-airflow/docker.sock docker {args}")


def test_the_step_users_docker_runs_only_confined_containers(host):
    """Through the proxy the step user runs containers as itself, binding its run folders;
    whatever would escape the container, or touch one it did not make, is refused."""
    uid = host.check_output("id -u cwl-step")
    gid = host.check_output("id -g cwl-step")
    work = "/var/lib/cwl-airflow/tmp/proxy-test"
    host.run_expect([0], f"runuser -u cwl-step -- sh -c 'mkdir -p {work} && ln -sfn /etc {work}/etc'")
    image = "appliance-test/busybox:latest"
    as_step = f"--rm --user {uid}:{gid}"
    try:
        ran = step_docker(host, f"run {as_step} --mount type=bind,source={work},target=/work {image} "
                                "sh -c 'echo hi > /work/out && cat /work/out && id -u'")
        assert ran.rc == 0 and ran.stdout.split() == ["hi", uid], ran.stderr
        other = host.check_output(f"docker run -d --rm {image} sleep 60")
        for refused in (f"run {as_step} --privileged {image} true",
                        f"run --rm --user 0:0 {image} true",
                        f"run --rm {image} true",
                        f"run {as_step} --net host {image} true",
                        f"run {as_step} --pid host {image} true",
                        f"run {as_step} --cap-add SYS_ADMIN {image} true",
                        f"run {as_step} -v /etc:/x {image} true",
                        f"run {as_step} --mount type=bind,source={work}/etc,target=/x {image} true",
                        f"run {as_step} --device /dev/fuse {image} true",
                        f"run {as_step} -p 8081:80 {image} true",
                        "ps", f"exec {other} true", f"kill {other}", "network ls"):
            answer = step_docker(host, refused)
            assert answer.rc != 0 and "refused by cwl-airflow's Docker proxy" in answer.stderr, (refused, answer.stderr)
        assert host.run("runuser -u cwl-step -- docker ps").rc != 0  # the engine's own socket
        assert host.check_output(f"docker inspect -f '{{{{.State.Running}}}}' {other}") == "true"
    finally:
        host.run("docker ps -q | xargs -r docker kill")
        host.run(f"rm -rf {work}")


def test_triggers_need_a_valid_signature(cwl, cwl_keys):
    dag_id = upload(cwl, "three-step.cwl")
    other_dag = upload(cwl, "trivial.cwl")
    runs = len(cwl.runs(dag_id))
    job = {"name": "x"}
    conf = {"job": job}
    other_private, _ = __import__("conftest")._rsa_key_pair()

    def refused(reason, signature, run_id=None, dag=dag_id):
        assert reason in expect_error(lambda: cwl.trigger(dag, job, run_id=run_id, signature=signature), 403)

    refused("signed", None)
    refused("invalid signature", signed(cwl, cwl_keys, dag_id, conf, key=other_private))
    refused("expired", signed(cwl, cwl_keys, dag_id, conf, lifetime=-60))
    refused("exp", signed(cwl, cwl_keys, dag_id, conf, drop=("exp",)))  # valid for ever
    refused("lifetime", signed(cwl, cwl_keys, dag_id, conf, lifetime=86400))
    refused("conf", signed(cwl, cwl_keys, dag_id, {"job": {"name": "y"}}))
    refused("run_id", signed(cwl, cwl_keys, dag_id, conf, run_id="other"), run_id="mine")
    refused("another workflow", signed(cwl, cwl_keys, dag_id, conf), dag=other_dag)  # signed for A, starts B
    refused("another appliance", signed(cwl, cwl_keys, dag_id, conf, aud="some-other-appliance"))
    assert len(cwl.runs(dag_id)) == runs  # nothing was triggered

    once = signed(cwl, cwl_keys, dag_id, conf)
    cwl.trigger(dag_id, job, signature=once)
    refused("used already", once)  # a replay, however often
    refused("used already", once)
    assert len(cwl.runs(dag_id)) == runs + 1


def test_broken_cwl_is_an_import_error_naming_file_and_reason(host, airflow):
    put_file(host, "/var/lib/cwl-airflow/workflows/broken.cwl", (CWL / "broken.cwl").read_bytes(), owner="airflow")
    put_file(host, "/var/lib/airflow/dags/cwl_broken.py",
             b"from cwl_airflow.extensions.cwldag import CWLDAG\n"
             b"dag = CWLDAG(dag_id='broken', workflow='/var/lib/cwl-airflow/workflows/broken.cwl')\n", owner="airflow")
    try:
        deadline = time.monotonic() + 120
        errors = []
        while not errors:
            assert time.monotonic() < deadline, "no import error"
            errors = [e for e in airflow.get("/api/v2/importErrors")["import_errors"] if "cwl_broken.py" in e["filename"]]
            time.sleep(2)
        assert "broken.cwl" in errors[0]["stack_trace"] and "nowhere/out" in errors[0]["stack_trace"]
        airflow.get("/api/v2/dags/cwl_example")  # other DAGs are unaffected
    finally:
        host.run("rm -f /var/lib/airflow/dags/cwl_broken.py /var/lib/cwl-airflow/workflows/broken.cwl")


def test_reports_are_signed_and_complete(cwl, cwl_keys, receiver):
    dag_id = upload(cwl, "three-step.cwl")
    result = run(cwl, cwl_keys, dag_id, {"name": "reports"})
    assert result["state"] == "success"
    # the reporter backs off up to 60 s while no receiver listens (earlier tests' runs had none)
    deadline = time.monotonic() + 90
    while not any(r["path"] == "/reports/results" for r in receiver.reports(result["run_id"])):
        assert time.monotonic() < deadline, "no results report"
        time.sleep(0.5)
    reports = [(r["path"], jwt.decode(r["body"]["payload"], cwl_keys.report_public, algorithms=["RS256"],
                                      audience=f"http://127.0.0.1:{REPORT_PORT}{r['path']}",
                                      options={"require": ["exp", "iat", "seq"]}))
               for r in receiver.reports(result["run_id"])]
    sequence = [p["seq"] for _, p in reports]
    assert sequence == sorted(set(sequence))  # increasing: a receiver refuses a replayed seq
    statuses = {(p["task_id"], p["state"]) for path, p in reports if path == "/reports/status"}
    for task in ("CWLJobDispatcher", "greet", "shout", "count", "CWLJobGatherer"):
        assert {(task, "running"), (task, "success")} <= statuses
    progress = [p["progress"] for path, p in reports if path == "/reports/progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    results = [p["results"] for path, p in reports if path == "/reports/results"]
    assert results[0]["shouted"]["basename"] == "upper.txt"


def test_reports_are_held_while_the_receiver_is_down(host, cwl, cwl_keys, receiver):
    dag_id = upload(cwl, "three-step.cwl")
    receiver.stop()
    result = run(cwl, cwl_keys, dag_id, {"name": "held"})
    assert result["state"] == "success"
    assert int(host.check_output("ls %s | wc -l", OUTBOX)) >= 10  # queued, not lost
    receiver.start()
    deadline = time.monotonic() + 120  # the reporter backs off up to 60 s
    while host.check_output("ls %s | grep -c json || true", OUTBOX) != "0":
        assert time.monotonic() < deadline, "the reports were not delivered"
        time.sleep(1)
    delivered = receiver.reports(result["run_id"])
    assert delivered[-1]["path"] == "/reports/results" or any(r["path"] == "/reports/results" for r in delivered)
    progress = [jwt.decode(r["body"]["payload"], cwl_keys.report_public, algorithms=["RS256"],
                           audience=f"http://127.0.0.1:{REPORT_PORT}{r['path']}")["progress"]
                for r in delivered if r["path"] == "/reports/progress"]
    assert progress == sorted(progress) and progress[-1] == 100  # in order


def test_stop_ends_tasks_and_containers_and_cleans_tmp(host, cwl, cwl_keys):
    dag_id = upload(cwl, "sleep.cwl")
    conf = {"job": {"seconds": 300}}
    run_id = cwl.trigger(dag_id, conf["job"], signature=signed(cwl, cwl_keys, dag_id, conf))["run_id"]
    run_tmp = f"/var/lib/cwl-airflow/tmp/{dag_id}/{run_id}"
    deadline = time.monotonic() + 120
    container = ""
    while not container:  # cwltool records the step's container id in the run's cid folder
        assert time.monotonic() < deadline, "the step's container did not start"
        time.sleep(1)
        container = host.run("cat %s/cid/nap*.cid", run_tmp).stdout.strip()
    assert host.check_output("docker inspect -f '{{.State.Running}}' %s", container) == "true"
    stopped = cwl.stop(dag_id, run_id)
    assert stopped["state"] == "failed" and stopped["stopped_tasks"] == ["nap"]
    assert host.run("docker inspect -f '{{.State.Running}}' %s", container).stdout.strip() in ("", "false")
    assert not host.file(run_tmp).exists
    time.sleep(3)  # a few scheduler loops: nothing may turn the run back to success
    run = cwl.run(dag_id, run_id)
    assert run["state"] == "failed"
    assert run["tasks"] == {"nap": "failed"}  # a workflow of one step: one task


def test_cwl_airflow_run_is_a_cwltest_runner(host, cwl_keys):
    """The CWL conformance runner drives `cwl-airflow run` over the project's own small suite."""
    host.run_expect([0], INSTALL_CWLTEST)
    host.run_expect([0], "rm -rf /root/conformance && mkdir /root/conformance")
    for path in (CWL / "conformance").iterdir():
        put_file(host, f"/root/conformance/{path.name}", path.read_bytes())
    put_file(host, "/root/trigger.pem", cwl_keys.trigger_private.encode(), mode="0600")
    result = host.run("cd /root/conformance && CWL_AIRFLOW_SIGNING_KEY=/root/trigger.pem "
                      "/root/cwltest/bin/cwltest --test tests.yaml --tool cwl-airflow -j 2 --timeout 300 -- run")
    assert result.rc == 0, result.stdout + result.stderr
    assert "All tests passed" in result.stdout + result.stderr
