"""One test host: an overlay over the golden rootfs, booted by systemd-nspawn with systemd as PID 1."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from testhosts.settings import Settings
from testhosts.shell import CommandError, log, run

# --register=no/--keep-unit: the build machine's PID 1 is not systemd (no machined).
# @keyring: runc (docker inside the host) calls keyctl(), which nspawn's seccomp filter denies.
NSPAWN_FLAGS = ("--register=no", "--keep-unit", "--boot", "--console=read-only",
                "--resolv-conf=off", "--link-journal=no", "--system-call-filter=@keyring")
CLEAN_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8")


class HostError(RuntimeError):
    pass


@dataclass
class Host:
    name: str
    ip: ipaddress.IPv4Address
    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    def save(self) -> None:
        (self.dir / "host.json").write_text(json.dumps({"name": self.name, "ip": str(self.ip)}))

    @classmethod
    def load(cls, dir: Path) -> Host:
        data = json.loads((dir / "host.json").read_text())
        return cls(data["name"], ipaddress.IPv4Address(data["ip"]), dir)

    # ------------------------------------------------------------------ filesystem
    def create(self, golden: Path, settings: Settings, authorized_key: str, etc_hosts: str) -> str:
        """Make the host's root as an overlay over the golden rootfs; return its ssh host key."""
        for sub in ("upper", "work", "root", "docker"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.save()
        run(["mount", "-t", "overlay", f"testhost-{self.name}", "-o",
             f"lowerdir={golden},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}", self.root])
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.name + "\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n{etc_hosts}")
        dns = _build_machine_nameserver()
        (etc / "resolv.conf").write_text(f"nameserver {dns}\n")
        (etc / "systemd/network/10-host0.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={self.ip}/{settings.network.prefixlen}\n"
            f"Gateway={settings.gateway}\nDNS={dns}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n")
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(authorized_key)
        (ssh_dir / "authorized_keys").chmod(0o600)
        key = etc / "ssh/ssh_host_ed25519_key"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}", "-f", key])
        self._trust_extra_cas(settings)
        return " ".join(Path(f"{key}.pub").read_text().split()[:2])

    def _trust_extra_cas(self, settings: Settings) -> None:
        cas = settings.extra_cas()
        if not cas:
            return
        for ca in cas:
            shutil.copy(ca, self.root / "usr/local/share/ca-certificates" / ca.name)
        run(["chroot", self.root, "update-ca-certificates"])
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        # pip in a venv and Node.js carry their own CA lists: point them at the system bundle.
        (self.root / "etc/pip.conf").write_text(f"[global]\ncert = {bundle}\n")
        with open(self.root / "etc/environment", "a") as env:
            env.write(f"NODE_EXTRA_CA_CERTS={bundle}\nREQUESTS_CA_BUNDLE={bundle}\n")

    # ------------------------------------------------------------------ lifecycle
    def boot(self, settings: Settings, devices: Iterable[str] = ()) -> None:
        pip_cache = settings.cache_dir / "pip"
        pip_cache.mkdir(parents=True, exist_ok=True)
        cmd = ["systemd-nspawn", "-D", str(self.root), "-M", self.name, *NSPAWN_FLAGS,
               f"--network-bridge={settings.bridge}", f"--uuid={uuid.uuid4()}",
               # docker's overlay2 cannot sit on the overlayfs root: give it a real directory
               f"--bind={self.dir / 'docker'}:/var/lib/docker",
               # one pip cache (root's) for every host: downloads and wheel builds (the MySQL
               # driver) happen once per build machine. Not apt's archive: apt does not wait for
               # its lock, so hosts installing at once would fail.
               f"--bind={pip_cache}:/root/.cache/pip", *(f"--bind={device}" for device in devices)]
        cgroups = _own_cgroups(f"testhost-{self.name}")

        def enter_cgroups() -> None:
            # Two containers started from one cgroup would share their cgroup tree (and collide).
            for cg in cgroups:
                (cg / "cgroup.procs").write_text(str(os.getpid()))

        with open(self.console_log, "ab") as console:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=enter_cgroups)
        (self.dir / "nspawn.pid").write_text(str(proc.pid))
        (self.dir / "cgroups.json").write_text(json.dumps([str(c) for c in cgroups]))

    def nspawn_pid(self) -> int | None:
        """PID of the host's systemd-nspawn while it runs (an exited one not yet reaped does not count)."""
        try:
            pid = int((self.dir / "nspawn.pid").read_text())
            comm, state = re.match(r"\d+ \((.*)\) (\S)", Path(f"/proc/{pid}/stat").read_text()).groups()
        except (FileNotFoundError, ValueError, AttributeError):
            return None
        if state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)  # our own child: reap it
            except ChildProcessError:
                pass
            return None
        return pid if comm == "systemd-nspawn" else None

    def leader(self) -> int:
        """PID (on the build machine) of the host's systemd."""
        pid = self.nspawn_pid()
        if pid is None:
            raise HostError(f"{self.name}: systemd-nspawn is not running; see {self.console_log}")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not children:
            raise HostError(f"{self.name}: systemd-nspawn has not started the host's systemd yet")
        return int(children[0])

    def exec(self, *cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host through its namespaces (no ssh needed), with the
        environment of a login, not the build machine's."""
        return run(["nsenter", "-t", str(self.leader()), "-a", "env", "-i", *CLEAN_ENV, *cmd], check=check, input=input)

    def wait_booted(self, timeout: float = 180) -> str:
        """Wait until systemd reports the boot finished and sshd accepts connections."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            try:
                # --wait can hang when attached before systemd is ready: poll instead
                state = self.exec("systemctl", "is-system-running", check=False).stdout.strip()
            except (HostError, CommandError, FileNotFoundError):
                state = "starting"
                if self.nspawn_pid() is None:
                    break
            if state in ("running", "degraded"):
                break
            time.sleep(0.3)
        else:
            raise HostError(f"{self.name}: not booted after {timeout:.0f}s (state {state}); see {self.console_log}")
        if state == "degraded":
            failed = self.exec("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
            raise HostError(f"{self.name}: booted degraded, failed units:\n{failed}")
        if state != "running":
            raise HostError(f"{self.name}: systemd-nspawn exited (state {state}); see {self.console_log}")
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex((str(self.ip), 22)) == 0:
                    return state
            time.sleep(0.2)
        raise HostError(f"{self.name}: sshd on {self.ip}:22 not reachable after {timeout:.0f}s")

    def stop(self, timeout: float = 90) -> None:
        """Power the host off cleanly (nspawn turns SIGTERM into a poweroff), kill it if it hangs."""
        pid = self.nspawn_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.nspawn_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.nspawn_pid() is not None:
                log.warning("%s: no clean poweroff after %.0fs, killing it", self.name, timeout)
                os.killpg(pid, signal.SIGKILL)
                time.sleep(1)
        (self.dir / "nspawn.pid").unlink(missing_ok=True)

    def remove(self, trash: Path) -> None:
        """Stop the host and delete everything it wrote (in the background, via ``trash``)."""
        self.stop()
        cgroups = self.dir / "cgroups.json"
        if cgroups.exists():
            for cg in json.loads(cgroups.read_text()):
                _remove_cgroup(Path(cg))
        if os.path.ismount(self.root):
            run(["umount", self.root])
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
        # deleting a used host (~1 GB of small files) takes a while: do it in the background
        doomed = trash / f"{self.name}.{time.time_ns()}"
        trash.mkdir(parents=True, exist_ok=True)
        self.dir.rename(doomed)
        subprocess.Popen(["rm", "-rf", str(doomed)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _build_machine_nameserver() -> str:
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        if line.startswith("nameserver"):
            return line.split()[1]
    raise HostError("no nameserver in /etc/resolv.conf of the build machine")


def _own_cgroups(name: str) -> list[Path]:
    """One fresh cgroup under the caller's in every hierarchy (cgroup v1, v2 and hybrid)."""
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount = Path("/sys/fs/cgroup/unified")
            if not (mount / "cgroup.procs").exists():
                mount = Path("/sys/fs/cgroup")
        else:
            mount = Path("/sys/fs/cgroup") / controllers.removeprefix("name=")
        parent = mount / path.lstrip("/")
        if not (parent / "cgroup.procs").exists():
            continue
        d = parent / "testhosts" / name
        d.mkdir(parents=True, exist_ok=True)
        if (parent / "cpuset.cpus").exists():  # v1 cpuset children start with no CPUs
            for f in ("cpuset.cpus", "cpuset.mems"):
                value = (parent / f).read_text()
                (d.parent / f).write_text(value)
                (d / f).write_text(value)
        dirs.append(d)
    return dirs


def _remove_cgroup(d: Path) -> None:
    if not d.is_dir():
        return
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        d.rmdir()
    except OSError:
        pass
