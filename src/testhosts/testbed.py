"""A named group of test hosts with the files Ansible, ssh and testinfra need to reach them."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from testhosts import network, rootfs
from testhosts.host import Host, HostError
from testhosts.settings import Settings
from testhosts.shell import log, run

FIRST_HOST_OCTET = 10


class Testbed:
    """Hosts under ``<state>/testbeds/<name>``. Several testbeds share the bridge; host names
    and addresses are unique across all of them."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, settings: Settings | None = None) -> None:
        self.name = name
        self.settings = settings or Settings.from_env()
        self.dir = self.settings.state_dir / "testbeds" / name
        self.key = self.dir / "id_ed25519"
        self.inventory = self.dir / "inventory.yml"
        self.ssh_config = self.dir / "ssh_config"
        self.known_hosts = self.dir / "known_hosts"

    # ------------------------------------------------------------------ queries
    def hosts(self) -> list[Host]:
        return [Host.load(d) for d in sorted((self.dir / "hosts").glob("*")) if (d / "host.json").exists()]

    def host(self, name: str) -> Host:
        for h in self.hosts():
            if h.name == name:
                return h
        raise HostError(f"testbed {self.name!r} has no host {name!r}")

    @classmethod
    def all(cls, settings: Settings) -> list[Testbed]:
        return [cls(d.name, settings) for d in sorted((settings.state_dir / "testbeds").glob("*")) if d.is_dir()]

    def _free_addresses(self) -> Iterable[ipaddress.IPv4Address]:
        used = {h.ip for tb in Testbed.all(self.settings) for h in tb.hosts()}
        for ip in self.settings.network.hosts():
            if int(ip) - int(self.settings.network.network_address) >= FIRST_HOST_OCTET and ip not in used:
                yield ip

    # ------------------------------------------------------------------ lifecycle
    def up(self, names: Iterable[str], groups: Mapping[str, Iterable[str]] | None = None,
           hostvars: Mapping[str, Mapping[str, Any]] | None = None, timeout: float = 180,
           devices: Iterable[str] = ()) -> list[Host]:
        """Boot the hosts not running yet and wait until each has booted and accepts ssh.

        ``groups`` maps Ansible group names to host names for the inventory; ``hostvars`` adds
        inventory variables per host; ``devices`` are the build machine's device nodes the
        hosts get (e.g. /dev/fuse)."""
        running = {h.name for h in self.hosts() if h.nspawn_pid()}
        names = [n for n in names if n not in running]
        taken = {h.name for tb in Testbed.all(self.settings) for h in tb.hosts()}
        if clash := taken.intersection(names):
            raise HostError(f"host names already in use: {', '.join(sorted(clash))} (python -m testhosts list)")
        golden = rootfs.golden(self.settings)
        network.up(self.settings)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"testbed-{self.name}", "-f", self.key])
        pubkey = Path(f"{self.key}.pub").read_text()
        hosts = [Host(n, ip, self.dir / "hosts" / n) for n, ip in zip(names, self._free_addresses())]
        if len(hosts) < len(names):
            raise HostError(f"no free addresses left in {self.settings.network}")
        everyone = self.hosts() + hosts
        etc_hosts = "".join(f"{h.ip} {h.name}\n" for h in everyone)
        known = self.known_hosts.read_text() if self.known_hosts.exists() else ""
        try:
            for h in hosts:
                known += f"{h.name},{h.ip} {h.create(golden, self.settings, pubkey, etc_hosts)}\n"
                h.boot(self.settings, devices)
            self.known_hosts.write_text(known)
            self._write_access_files(everyone, groups or {}, hostvars or {})
            for h in hosts:
                h.wait_booted(timeout)
                log.info("%s booted at %s", h.name, h.ip)
        except BaseException:
            for h in hosts:
                if h.dir.exists():
                    h.remove(self.settings.state_dir / "trash")
            raise
        return hosts

    def down(self) -> None:
        """Remove every host of this testbed and its files (key, inventory, generated
        credentials); remove the network when no testbed is left."""
        for h in self.hosts():
            h.remove(self.settings.state_dir / "trash")
            log.info("%s removed", h.name)
        shutil.rmtree(self.dir, ignore_errors=True)
        if not any(tb.hosts() for tb in Testbed.all(self.settings)):
            network.down(self.settings)

    # ------------------------------------------------------------------ access
    @contextlib.contextmanager
    def forward(self, name: str, remote_port: int, local_port: int = 0) -> Iterator[int]:
        """Forward a local port (a free one by default) to a port on the host's loopback,
        as `ssh -L` does; yield the local port."""
        if not local_port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                local_port = s.getsockname()[1]
        tunnel = subprocess.Popen(
            ["ssh", "-F", str(self.ssh_config), "-o", "ControlMaster=no", "-o", "ControlPath=none",
             "-o", "ExitOnForwardFailure=yes", "-N", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}", name])
        try:
            for _ in range(100):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", local_port)) == 0:
                        break
                if tunnel.poll() is not None:
                    raise HostError(f"ssh -L {local_port}:127.0.0.1:{remote_port} {name} exited {tunnel.returncode}")
                time.sleep(0.1)
            yield local_port
        finally:
            tunnel.terminate()
            tunnel.wait()

    def _write_access_files(self, hosts: list[Host], groups: Mapping[str, Iterable[str]],
                            hostvars: Mapping[str, Mapping[str, Any]]) -> None:
        names = " ".join(h.name for h in hosts)
        sockets = self.settings.state_dir / "cm"  # a Unix socket path has at most 107 bytes
        sockets.mkdir(mode=0o700, exist_ok=True)
        self.ssh_config.write_text(
            "".join(f"Host {h.name}\n  HostName {h.ip}\n" for h in hosts)
            + f"Host {names}\n  User root\n  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
            f"  ControlMaster auto\n  ControlPath {sockets}/%C\n  ControlPersist 120s\n")
        grouped = {g: {"hosts": {n: None for n in members}} for g, members in groups.items()}
        inventory = {"all": {
            "hosts": {h.name: dict(hostvars.get(h.name, {})) or None for h in hosts},
            "vars": {"ansible_user": "root", "ansible_ssh_common_args": f"-F {self.ssh_config}",
                     "ansible_python_interpreter": "/usr/bin/python3"},
            "children": grouped,
        }}
        self.inventory.write_text(json.dumps(inventory, indent=2) + "\n")


@contextlib.contextmanager
def one_host(name: str, settings: Settings, suite: str, devices: Iterable[str] = ()) -> Iterator[Host]:
    """A testbed `name` of one fresh host (also `name`) of Debian `suite`, removed afterwards."""
    testbed = Testbed(name, dataclasses.replace(settings, suite=suite))
    testbed.down()  # what an interrupted earlier run may have left
    try:
        yield testbed.up([name], devices=devices)[0]
    finally:
        testbed.down()
