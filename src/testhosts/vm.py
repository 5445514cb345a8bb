"""A virtual machine booted by qemu from a disk image: how the box and its base image are tested.

The disk is used copy-on-write (the image is never changed); ssh and the other guest ports are
forwarded to free ports on the build machine's 127.0.0.1 (qemu's user-mode network), and
``offline`` cuts the guest off from everything else.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from testhosts.shell import log


class VMError(RuntimeError):
    pass


def vagrant_insecure_key() -> Path:
    """Vagrant's insecure private key, as Debian's vagrant package ships it (its .pub beside it)."""
    keys = sorted(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant"))
    if not keys:
        raise VMError("no Vagrant insecure key: Debian's vagrant package ships it (make deps)")
    return keys[-1]


def private_copy(key: Path, dir: Path) -> Path:
    """A 0600 copy of a key in dir (ssh refuses the package's 0644 file)."""
    copy = dir / key.name
    shutil.copy(key, copy)
    copy.chmod(0o600)
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VM:
    def __init__(self, disk: Path, dir: Path, key: Path, *, user: str = "vagrant", accel: str = "tcg",
                 cpus: int = 2, memory: int = 4096, guest_ports: Iterable[int] = (), offline: bool = False) -> None:
        self.disk, self.dir, self.key, self.user = disk, dir, key, user
        self.accel, self.cpus, self.memory, self.offline = accel, cpus, memory, offline
        self.ports = {22: free_port(), **{p: free_port() for p in guest_ports}}
        self.console_log = dir / "console.log"
        self.ssh_config = dir / "ssh_config"
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def command(self) -> list[str]:
        forwards = "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in self.ports.items())
        return [
            "qemu-system-x86_64", "-machine", f"pc,accel={self.accel}", "-smp", str(self.cpus),
            "-m", str(self.memory), "-display", "none", "-serial", f"file:{self.console_log}",
            "-drive", f"file={self.disk},if=virtio,snapshot=on",
            "-netdev", f"user,id=net0{',restrict=on' if self.offline else ''}{forwards}",
            "-device", "virtio-net-pci,netdev=net0",
        ]

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ssh_config.write_text(
            f"Host vm\n  HostName 127.0.0.1\n  Port {self.ports[22]}\n  User {self.user}\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 10\n")
        log.info("booting %s with qemu (%s)", self.disk, self.accel)
        self.started = time.monotonic()
        self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "vm", command],
                              capture_output=True, text=True, timeout=timeout)

    def wait_ssh(self, timeout: float = 600) -> float:
        """Wait until ssh works; return the seconds since start."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc and self._proc.stderr else ""
                raise VMError(f"qemu exited: {err.strip()}; console: {self.console_tail()}")
            try:
                if self.ssh("true", timeout=30).returncode == 0:
                    return time.monotonic() - self.started
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise VMError(f"no ssh after {timeout} s; console: {self.console_tail()}")

    def console_tail(self, lines: int = 20) -> str:
        if not self.console_log.exists():
            return ""
        return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> VM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
