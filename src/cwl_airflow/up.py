"""cwl-airflow up: Airflow with the CWL API for one user, in the foreground, in one home folder.

The portable bundle's main command (any installation of Airflow and cwl-airflow can run it).
Airflow runs as `airflow standalone` would run it: the LocalExecutor on SQLite (in WAL mode) and
the simple auth manager, with its own commands for the database and the daemons (api-server,
scheduler, dag-processor, triggerer: one `airflow` child each, its output shown with its name).
Around them: one `up` per home, a port in use refused before anything starts, SIGTERM handled as
Ctrl-C, and a daemon that exits ends `up` with its name and status after the others are stopped,
so that whatever supervises `up` (e.g. systemctl --user) starts the whole again.

The home is $CWL_AIRFLOW_HOME; Airflow's is $AIRFLOW_HOME (the bundle's commands set both:
~/.local/share/cwl-airflow and its airflow/ folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

DAEMONS = ("scheduler", "dag-processor", "triggerer", "api-server")
ADMIN = "admin"
STOP_SECONDS = 30  # a daemon's time to end after SIGTERM, then SIGKILL
# As the airflow role's defaults set them (tests/unit/test_facts.py): a scheduler quick to start
# tasks, no re-parsing every 30 s, task supervisors that see their task's exit within 1 s, not 5.
TUNING = {
    "scheduler": {"scheduler_idle_sleep_time": "0.3"},
    "dag_processor": {"min_file_process_interval": "600"},
    "workers": {"min_heartbeat_interval": "1"},
}


class UpError(Exception):
    """What makes `up` refuse to start, said to the user."""


def homes() -> tuple[Path, Path]:
    """$CWL_AIRFLOW_HOME and $AIRFLOW_HOME."""
    missing = [name for name in ("CWL_AIRFLOW_HOME", "AIRFLOW_HOME") if not os.environ.get(name)]
    if missing:
        raise UpError(f"{' and '.join(missing)} not set: run the bundle's bin/cwl-airflow, which sets them")
    return Path(os.environ["CWL_AIRFLOW_HOME"]).expanduser(), Path(os.environ["AIRFLOW_HOME"]).expanduser()


def _kept_secret(path: Path, make) -> str:
    """A secret made once and kept in a 0600 file."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()


def prepare(home: Path, airflow_home: Path) -> None:
    """The folders (0700) and the admin's password file."""
    try:
        for folder in (home, airflow_home, home / "secrets"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = home / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UpError(f"cannot write to {home} ({err.strerror}): set CWL_AIRFLOW_HOME to a folder you may write") from None
    _kept_secret(airflow_home / "passwords.json", lambda: json.dumps({ADMIN: secrets.token_urlsafe(18)}))


def container_engine(env: dict[str, str]) -> str:
    """What runs the steps' containers for this user: Docker where its daemon answers them, else
    Podman (rootless), else none (config.CONTAINER_ENGINES)."""
    if shutil.which("docker", path=env["PATH"]):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=30).returncode == 0:
                return "docker"
    return "podman" if shutil.which("podman", path=env["PATH"]) else "none"


ENGINE_SAID = {
    "docker": "containers: docker",
    "podman": "containers: podman (docker is not installed, or its daemon does not answer this user)",
    "none": "no container engine this user may use: steps that require a container (DockerRequirement) will "
            "be refused; install Docker (and join its group docker) or Podman, or run `up --no-container`",
}


def configure(home: Path, airflow_home: Path, port: int, engine: str, no_container: bool = False) -> str:
    """Write AIRFLOW_HOME/airflow.cfg (0600): one user's Airflow on SQLite, the CWL folders under
    home, the steps' container engine (or none at all: `no_container`); every `airflow` command
    with this AIRFLOW_HOME, daemon or not, reads it. The API's URL."""
    from configparser import ConfigParser

    from cryptography.fernet import Fernet

    keys = home / "secrets"
    url = f"http://127.0.0.1:{port}"
    config = ConfigParser(interpolation=None)
    config.read_dict({
        "core": {
            "executor": "LocalExecutor",
            "parallelism": str(os.cpu_count() or 2),
            "auth_manager": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "simple_auth_manager_users": f"{ADMIN}:admin",
            "simple_auth_manager_passwords_file": str(airflow_home / "passwords.json"),
            "load_examples": "False",
            "dags_folder": str(home / "dags"),
            "fernet_key": _kept_secret(keys / "fernet.key", lambda: Fernet.generate_key().decode()),
            "execution_api_server_url": f"{url}/execution/",
        },
        "database": {"sql_alchemy_conn": f"sqlite:///{airflow_home / 'airflow.db'}"},
        "api": {"host": "127.0.0.1", "port": str(port), "base_url": url,
                "secret_key": _kept_secret(keys / "api.secret", lambda: secrets.token_urlsafe(32))},
        "api_auth": {"jwt_secret": _kept_secret(keys / "jwt.secret", lambda: secrets.token_urlsafe(64))},
        **TUNING,
        "cwl": {**{f"{name}_folder": str(home / "cwl" / name) for name in ("workflows", "inputs", "outputs", "tmp", "reports")},
                "queues_file": str(home / "cwl" / "queues.yaml"), "uploaders": ADMIN,
                "container_engine": engine, "cwltool_options": "--no-container" if no_container else ""},
    })
    path = airflow_home / "airflow.cfg"
    fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# written by `cwl-airflow up` at each start (changes here are lost; --port sets the port)\n")
        config.write(f)
    os.replace(f"{path}.tmp", path)
    return url


def environment(airflow_home: Path) -> dict[str, str]:
    """The daemons' environment: AIRFLOW_HOME, and `airflow` and `node` found where this Python is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}  # airflow.cfg decides
    env["AIRFLOW_HOME"] = str(airflow_home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _locked(home: Path) -> IO[str]:
    """Hold home/up.lock for as long as this process lives; refuse when another `up` holds it."""
    lock = open(home / "up.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        raise UpError(f"another `cwl-airflow up` runs on {home} (pid {lock.read().strip() or '?'})") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _stop_leftovers(home: Path) -> None:
    """Daemons of an earlier `up` that was killed (-9) before it could stop them: stopped now, so
    that they free the port and the database (their process groups are in home/up.pids)."""
    pids = home / "up.pids"
    groups = [int(pid) for pid in pids.read_text().split()] if pids.exists() else []
    left = [group for group in groups if _group_alive(group)]
    for group in left:
        _say("up", f"stopping process group {group}, left by an earlier up")
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while any(_group_alive(group) for group in left) and time.monotonic() < deadline:
        time.sleep(0.2)
    for group in left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    pids.unlink(missing_ok=True)


def _group_alive(group: int) -> bool:
    """Whether the group's leader still runs an `airflow` daemon (not a process that reused its id)."""
    try:
        return b"airflow" in Path(f"/proc/{group}/cmdline").read_bytes() and os.getpgid(group) == group
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as response:
            health = json.load(response)
    except (OSError, ValueError):
        return False
    return all(health.get(part, {}).get("status") == "healthy"
               for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))


def _say(name: str, line: str) -> None:
    print(f"{name:13} | {line}", flush=True)


class Daemon:
    """One `airflow <name>` child in a session of its own (so that stopping it stops its children),
    its output forwarded line by line."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(["airflow", name], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, text=True, errors="replace")
        self.output = threading.Thread(target=self._forward, daemon=True)
        self.output.start()

    def _forward(self) -> None:
        for line in self.process.stdout:
            _say(self.name, line.rstrip())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say("up", f"{self.name} did not end within {STOP_SECONDS} s: killed")
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # what it started and left behind, too
        except ProcessLookupError:
            pass
        self.process.wait()
        self.output.join(5)


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def run(port: int, no_container: bool = False) -> int:
    home, airflow_home = homes()
    prepare(home, airflow_home)
    lock = _locked(home)
    _stop_leftovers(home)
    if not _port_free(port):
        raise UpError(f"port {port} on 127.0.0.1 is in use: stop what uses it or run `cwl-airflow up --port N`")
    env = environment(airflow_home)
    engine = "none" if no_container else container_engine(env)
    url = configure(home, airflow_home, port, engine, no_container)
    _say("up", f"home {home}")
    _say("up", "tools run on this machine, in no container (--no-container)" if no_container else ENGINE_SAID[engine])
    _say("up", "database: migrating (a new one takes a minute)")
    migrated = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    if migrated.returncode != 0:
        raise UpError(f"`airflow db migrate` failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-2000:]}")
    with sqlite3.connect(airflow_home / "airflow.db") as db:  # readers do not wait for the writer
        db.execute("PRAGMA journal_mode=WAL")
    subprocess.run(["cwl-airflow", "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    daemons: list[Daemon] = []
    status = 0
    try:
        daemons = [Daemon(name, env) for name in DAEMONS]
        (home / "up.pids").write_text("".join(f"{d.process.pid}\n" for d in daemons))
        ready = False
        while True:
            ended = [d for d in daemons if d.process.poll() is not None]
            if ended:
                _say("up", f"{ended[0].name} exited with status {ended[0].process.returncode}: stopping the others")
                status = 1
                break
            if not ready and _healthy(url):
                ready = True
                _say("up", f"ready: {url} (user {ADMIN}, password in {airflow_home / 'passwords.json'})")
                _say("up", f"run workflows with: CWL_AIRFLOW_API={url} cwl-airflow run workflow.cwl job.json")
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say("up", "stopping")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for daemon in daemons:
            daemon.stop()
        deadline = time.monotonic() + STOP_SECONDS
        for daemon in daemons:
            daemon.wait_stopped(deadline)
        (home / "up.pids").unlink(missing_ok=True)
        lock.close()
    _say("up", "stopped")
    return status
