"""The Docker proxy's policy: what a step's container may be (the host tests drive a real engine)."""

from __future__ import annotations

import pytest

from cwl_airflow.docker_proxy import OWNER_LABEL, Policy, Refused


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "tmp" / "run").mkdir(parents=True)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "tmp" / "run" / "escape").symlink_to("/etc")
    return tmp_path


@pytest.fixture
def policy(folders):
    return Policy((folders / "tmp",), (folders / "inputs",))


def spec(**host):
    return {"User": "1000:1000", "Image": "busybox", "HostConfig": host}


def test_a_container_as_cwltool_makes_it_is_confined_and_labelled(policy, folders):
    run, inputs = folders / "tmp" / "run", folders / "inputs"
    made = policy.check_create(spec(Mounts=[{"Type": "bind", "Source": str(run), "Target": "/out"},
                                            {"Type": "bind", "Source": str(inputs), "Target": "/in"}],
                                    Binds=[f"{inputs}:/in2"], NetworkMode="none"), 1000, 1000)
    host = made["HostConfig"]
    assert [m["ReadOnly"] for m in host["Mounts"]] == [False, True]  # inputs forced read-only
    assert host["Binds"] == [f"{inputs}:/in2:ro"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert made["Labels"][OWNER_LABEL] == "1000"


@pytest.mark.parametrize("user", [None, "", "0:0", "root", "1000", "1001:1000"])
def test_a_container_runs_as_its_caller(policy, user):
    with pytest.raises(Refused, match="must run as its user"):
        policy.check_create({**spec(), "User": user}, 1000, 1000)


@pytest.mark.parametrize("host", [
    {"Privileged": True}, {"CapAdd": ["SYS_ADMIN"]}, {"Devices": [{"PathOnHost": "/dev/fuse"}]},
    {"NetworkMode": "host"}, {"PidMode": "host"}, {"IpcMode": "host"}, {"UTSMode": "host"},
    {"UsernsMode": "host"}, {"NetworkMode": "container:abc"}, {"PortBindings": {"80/tcp": [{}]}},
    {"PublishAllPorts": True}, {"SecurityOpt": ["seccomp=unconfined"]}, {"SecurityOpt": ["apparmor=unconfined"]},
    {"VolumesFrom": ["other"]}, {"Sysctls": {"net.ipv4.ip_forward": "1"}}, {"CgroupParent": "/"},
    {"Runtime": "nvidia"}, {"GroupAdd": ["docker"]},
    {"Binds": ["/etc:/x"]}, {"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]},
    {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]},
    {"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]},
])
def test_what_would_escape_the_container_is_refused(policy, host):
    with pytest.raises(Refused):
        policy.check_create(spec(**host), 1000, 1000)


def test_links_are_resolved_before_the_folder_check(policy, folders):
    with pytest.raises(Refused, match="outside the run"):
        policy.check_create(spec(Mounts=[{"Type": "bind", "Source": str(folders / "tmp" / "run" / "escape"),
                                          "Target": "/x"}]), 1000, 1000)
    with pytest.raises(Refused, match="outside the run"):
        policy.check_create(spec(Binds=[f"{folders}/tmp/..:/x"]), 1000, 1000)


@pytest.mark.parametrize("method, path", [
    ("GET", "/containers/json"), ("POST", "/containers/abc/exec"), ("POST", "/exec/abc/start"),
    ("POST", "/build"), ("PUT", "/containers/abc/archive"), ("GET", "/networks"), ("POST", "/volumes/create"),
    ("POST", "/images/abc/tag"), ("DELETE", "/images/abc"), ("POST", "/swarm/init"), ("POST", "/plugins/pull"),
])
def test_routes_outside_docker_run_are_refused(policy, method, path):
    with pytest.raises(Refused, match="not allowed"):
        policy.check_route(method, path, 1000)


@pytest.mark.parametrize("method, path", [
    ("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/info"), ("GET", "/images/json"),
    ("GET", "/images/debian:12/json"), ("POST", "/images/create"), ("POST", "/images/load"),
])
def test_image_routes_cwltool_uses_pass(policy, method, path):
    policy.check_route(method, path, 1000)


def test_containers_are_reached_only_by_their_owner(policy, monkeypatch):
    engine = {"mine": {OWNER_LABEL: "1000"}, "theirs": {}, "other-user": {OWNER_LABEL: "1001"}}
    monkeypatch.setattr(Policy, "_labels", lambda self, container: engine.get(container))
    for action in ("json", "start", "attach", "wait", "kill", "logs"):
        method = "GET" if action in ("json", "logs") else "POST"
        policy.check_route(method, f"/containers/mine/{action}", 1000)
        for other in ("theirs", "other-user"):
            with pytest.raises(Refused, match="not created by this user"):
                policy.check_route(method, f"/containers/{other}/{action}", 1000)
    policy.check_route("DELETE", "/containers/mine", 1000)
    # `docker inspect IMAGE` asks for a container of that name first: the engine's 404 passes
    policy.check_route("GET", "/containers/appliance-test/busybox:latest/json", 1000)
    with pytest.raises(Refused, match="not allowed"):
        policy.check_route("POST", "/containers/mine/exec", 1000)


def test_an_idle_attach_keeps_its_stream_until_the_engine_ends_it(tmp_path):
    """`docker run` attaches, closes its input, then waits for output: the connection idles, and
    a collected task would close it (the output of 1 run in 20 was lost that way)."""
    import asyncio
    import gc
    import json
    import os
    import socket
    import threading

    from cwl_airflow.docker_proxy import Proxy

    engine_path, proxy_path = str(tmp_path / "engine.sock"), str(tmp_path / "proxy.sock")
    engine_tasks = []  # the stand-in engine keeps its own tasks: only the proxy is under test

    async def engine(reader, writer):
        engine_tasks.append(asyncio.current_task())
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/json" in head.split(b"\r\n")[0]:
            body = json.dumps({"Config": {"Labels": {OWNER_LABEL: str(os.getuid())}}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        else:  # the attach: upgraded, then the output once the "container" has run
            writer.write(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(1)
            writer.write(b"the output")
        await writer.drain()
        writer.close()

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve():
        await asyncio.start_unix_server(engine, engine_path)
        await asyncio.start_unix_server(Proxy(Policy((), (), engine_path)).handle, proxy_path)
        ready.set()

    threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True).start()
    assert ready.wait(10)
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(proxy_path)
        client.sendall(b"POST /v1.41/containers/abc/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n"
                       b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        received = client.recv(1024)
        client.shutdown(socket.SHUT_WR)  # no input, as `docker run -i < /dev/null`
        for _ in range(5):
            gc.collect()
        client.settimeout(10)
        while chunk := client.recv(1024):
            received += chunk
    loop.call_soon_threadsafe(loop.stop)
    assert received.startswith(b"HTTP/1.1 101") and received.endswith(b"the output")
