"""The Docker API as the step user may use it: what cwltool's `docker run` needs, no more.

The step user is in no `docker` group (that group is root on the host); its `DOCKER_HOST` is
this proxy's socket. Each request is checked before it reaches the engine:
- allowed: ping, version, image listing and inspection, pull, load, import, creating a
  container, and start/attach/wait/kill/stop/logs/stats/inspect/remove of containers this
  proxy created for the same user (a label names the uid); everything else (exec, build,
  copying into containers, networks, volumes, swarm, ...) is refused with 403;
- a container runs as the caller (`User` must be the caller's uid:gid, as cwltool passes it),
  with no capabilities, no new privileges, no host namespace, no devices, no published
  port, and bind mounts only from the allowed folders (read-only ones forced read-only).
  So a container can reach no file its user could not read on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import re
import socket
import struct
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCKER_SOCKET = "/var/run/docker.sock"
OWNER_LABEL = "org.commonwl.cwl-airflow.owner"
MAX_HEAD = 64 << 10
MAX_CREATE_BODY = 1 << 20
LISTEN_FD = 3
VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")
# an id or a name; `docker inspect NAME` asks for a container first, where NAME may be an image's
CONTAINER_PATH = re.compile(r"^/containers/(?P<id>.+?)(?:/(?P<action>[a-z]+))?$")
CONTAINER_ACTIONS = {("GET", "json"), ("POST", "start"), ("POST", "attach"), ("POST", "wait"), ("POST", "kill"),
                     ("POST", "stop"), ("POST", "resize"), ("GET", "logs"), ("GET", "stats"), ("DELETE", None)}
OPEN_PATHS = {("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/info"), ("GET", "/images/json"),
              ("POST", "/images/create"), ("POST", "/images/load")}
IMAGE_INSPECT = re.compile(r"^/images/[^?]+/json$")
log = logging.getLogger("cwl_airflow.docker_proxy")


class Refused(Exception):
    """A request the step user may not make; the message says why."""


@dataclass(frozen=True)
class Policy:
    writable: tuple[Path, ...]  # bind-mount sources allowed read-write (the run folders)
    read_only: tuple[Path, ...]  # allowed read-only (inputs, data roots)
    engine: str = DOCKER_SOCKET

    def check_route(self, method: str, path: str, uid: int) -> None:
        if (method, path) in OPEN_PATHS or (method == "GET" and IMAGE_INSPECT.match(path)):
            return
        if (method, path) == ("POST", "/containers/create"):
            return
        match = CONTAINER_PATH.match(path)
        if match and (method, match["action"]) in CONTAINER_ACTIONS:
            labels = self._labels(match["id"])
            if labels is not None and labels.get(OWNER_LABEL) != str(uid):  # None: the engine answers 404
                raise Refused(f"container {match['id']} was not created by this user through the proxy")
            return
        raise Refused(f"{method} {path} is not allowed to CWL steps")

    def check_create(self, spec: dict[str, Any], uid: int, gid: int) -> dict[str, Any]:
        """The container's spec, checked and confined; Refused names what is not allowed."""
        if spec.get("User") != f"{uid}:{gid}":
            raise Refused(f"a step's container must run as its user ({uid}:{gid}); "
                          "do not give cwltool --no-match-user")
        host = spec.setdefault("HostConfig", {}) or {}
        spec["HostConfig"] = host
        if host.get("Privileged"):
            raise Refused("privileged containers are not allowed")
        for key in ("CapAdd", "Devices", "DeviceRequests", "DeviceCgroupRules", "VolumesFrom", "Sysctls",
                    "PortBindings", "Links", "GroupAdd"):
            if host.get(key):
                raise Refused(f"HostConfig.{key} is not allowed")
        if host.get("PublishAllPorts"):
            raise Refused("published ports are not allowed")
        for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
            value = host.get(key) or ""
            if value == "host" or value.startswith("container:"):
                raise Refused(f"HostConfig.{key} {value!r} is not allowed")
        for key in ("CgroupParent", "Runtime", "VolumeDriver"):
            if host.get(key) not in (None, "", "runc"):
                raise Refused(f"HostConfig.{key} is not allowed")
        if any("unconfined" in option or "label" in option for option in host.get("SecurityOpt") or []):
            raise Refused("HostConfig.SecurityOpt may not lift confinement")
        binds = []
        for bind in host.get("Binds") or []:
            source, _, rest = bind.partition(":")
            target, _, options = rest.partition(":")
            source, read_only = self._source(source, "ro" in options.split(","))
            binds.append(f"{source}:{target}:{'ro' if read_only else 'rw'}")
        host["Binds"] = binds
        for mount in host.get("Mounts") or []:
            if mount.get("Type") == "bind":
                mount["Source"], read_only = self._source(mount.get("Source", ""), bool(mount.get("ReadOnly")))
                mount["ReadOnly"] = read_only
            elif mount.get("Type") not in ("tmpfs", "volume"):
                raise Refused(f"mounts of type {mount.get('Type')!r} are not allowed")
            elif mount.get("VolumeOptions", {}).get("DriverConfig"):
                raise Refused("volume drivers are not allowed")
        host["CapDrop"] = ["ALL"]
        host["SecurityOpt"] = [*(host.get("SecurityOpt") or []), "no-new-privileges"]
        spec["Labels"] = {**(spec.get("Labels") or {}), OWNER_LABEL: str(uid)}
        return spec

    def _source(self, source: str, read_only: bool) -> tuple[str, bool]:
        """A bind source with its links resolved, if under an allowed folder; read-only folders stay so."""
        if not source.startswith("/"):
            raise Refused(f"bind mounts must name an absolute path, not {source!r}")
        try:
            real = Path(os.path.realpath(source, strict=True))
        except OSError as err:
            raise Refused(f"bind mount of {source}: {err.strerror}") from None
        if any(real.is_relative_to(root) for root in self.writable):
            return str(real), read_only
        if any(real.is_relative_to(root) for root in self.read_only):
            return str(real), True
        raise Refused(f"bind mount of {source} (outside the run's folders and the inputs) is not allowed")

    def _labels(self, container: str) -> dict[str, str] | None:
        """The container's labels, or None when the engine knows no such container."""
        engine = _EngineConnection(self.engine)
        try:
            engine.request("GET", f"/containers/{urllib.parse.quote(container, safe='')}/json")
            answer = engine.getresponse()
            body = answer.read()
        finally:
            engine.close()
        if answer.status != 200:
            return None
        return (json.loads(body).get("Config") or {}).get("Labels") or {}


class _EngineConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def _refusal(reason: str) -> bytes:
    body = json.dumps({"message": f"refused by cwl-airflow's Docker proxy: {reason}"}).encode()
    return (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def _forward_body(headers: dict[str, str], reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    """A request body passed on as it comes (framed by Content-Length or chunks)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readline()
            writer.write(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    writer.write(trailer)
                writer.write(b"\r\n")
                break
            writer.write(await reader.readexactly(size + 2))
            await writer.drain()
    else:
        left = int(headers.get("content-length", "0"))
        while left > 0:
            data = await reader.read(min(left, 1 << 16))
            if not data:
                raise ConnectionError("the body ended early")
            writer.write(data)
            left -= len(data)
            await writer.drain()


class Proxy:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # the loop keeps tasks only weakly: a connection whose sockets wait for nothing (an attach
        # before its container starts) would be collected and closed, its output lost
        self.tasks: set[asyncio.Task] = set()

    def _keep(self, task: asyncio.Task) -> asyncio.Task:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._keep(asyncio.current_task())
        peer = client_writer.get_extra_info("socket")
        _, uid, gid = struct.unpack("3i", peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        engine_reader, engine_writer = await asyncio.open_unix_connection(self.policy.engine)
        answers = self._keep(asyncio.create_task(_pump(engine_reader, client_writer)))
        outcome = "next"
        try:
            while outcome == "next":
                outcome = await self._one_request(client_reader, engine_writer, client_writer, uid, gid)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            if outcome == "upgraded":  # the container's output comes until the engine ends the stream
                with contextlib.suppress(Exception):
                    await answers
            engine_writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(answers, 5)
            client_writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, engine: asyncio.StreamWriter,
                           client: asyncio.StreamWriter, uid: int, gid: int) -> str:
        """Check and pass on one request: "next", or "refused" (the connection ends), or
        "upgraded" (an attach: a raw stream both ways from now on)."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, _ = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, _, value in
                   (line.partition(":") for line in header_lines)}
        path = VERSION_PREFIX.sub("", urllib.parse.urlsplit(target).path)
        try:
            body = None
            if (method, path) == ("POST", "/containers/create"):
                length = int(headers.get("content-length", "-1"))
                if not 0 <= length <= MAX_CREATE_BODY:
                    raise Refused("a container's spec must come with a Content-Length of at most 1 MiB")
                spec = self.policy.check_create(json.loads(await reader.readexactly(length)), uid, gid)
                body = json.dumps(spec).encode()
            else:
                await asyncio.to_thread(self.policy.check_route, method, path, uid)
        except (Refused, OSError, json.JSONDecodeError) as err:
            log.warning("uid %d: %s %s refused: %s", uid, method, path, err)
            client.write(_refusal(str(err)))
            await client.drain()
            return "refused"
        if body is None:
            engine.write(head)
            await _forward_body(headers, reader, engine)
        else:
            kept = [line for line in head.decode("latin-1").split("\r\n")[:-2]
                    if not line.lower().startswith("content-length:")]
            engine.write(("\r\n".join([*kept, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode("latin-1"))
            engine.write(body)
        await engine.drain()
        if "upgrade" in headers:
            await _pump(reader, engine)
            return "upgraded"
        return "next"


def serve(writable: list[str], read_only: list[str], engine: str = DOCKER_SOCKET,
          path: str | None = None) -> int:
    """Serve on the socket systemd passes, or on one bound at `path`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    policy = Policy(tuple(Path(p).resolve() for p in writable), tuple(Path(p).resolve() for p in read_only), engine)
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
    elif os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
        listener = socket.socket(fileno=LISTEN_FD)
    else:
        print("docker-proxy: no socket: run it from its systemd socket or give --socket PATH", file=sys.stderr)
        return 2

    async def accept() -> None:
        server = await asyncio.start_unix_server(Proxy(policy).handle, sock=listener, limit=MAX_HEAD)
        log.info("Docker proxy for %s ready", policy.engine)
        await server.serve_forever()

    asyncio.run(accept())
    return 0
