"""A normal user of a test host with no python3, as the portable artifacts' tests and their
benchmark need one."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[2]
DOCKER_WORKFLOW = REPO / "tests/cwl/three-step.cwl"  # three steps in the test image (DockerRequirement)


class NormalUser:
    """User `someone` of a host whose python3 is purged; the files are copied to /var/tmp (the
    host's /tmp is a tmpfs), with the workflow's job as /var/tmp/job.json."""

    def __init__(self, host, suite: str, files: list[Path]) -> None:
        self.host, self.suite = host, suite
        host.exec("sh", "-c", "apt-get -qq -y purge python3 'python3*-minimal' >/dev/null 2>&1; "
                              "! command -v python3")
        host.exec("useradd", "--create-home", "someone")
        self.uid = host.exec("id", "-u", "someone").stdout.strip()
        self._package_lists = False
        for path in files:
            (host.root / "var/tmp" / path.name).write_bytes(path.read_bytes())
        (host.root / "var/tmp/job.json").write_text(json.dumps({"words": ["a", "b"], "shout": True}))

    def __call__(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = self.host.exec("runuser", "-u", "someone", "--", "env", "-i", "HOME=/home/someone",
                             "PATH=/usr/bin:/bin", "sh", "-c", script, check=False)
        if check:
            assert out.returncode == 0, f"{self.suite}: {script}\n{out.stdout}\n{out.stderr}"
        return out

    def processes(self) -> list[str]:
        return self.host.exec("pgrep", "-a", "-u", "someone", check=False).stdout.splitlines()

    def install(self, *packages: str) -> None:
        """Debian packages on the host, as root (the package lists fetched once)."""
        if not self._package_lists:
            self.host.exec("apt-get", "-qq", "update")
            self._package_lists = True
        self.host.exec("sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get -qq -y install "
                                   f"{' '.join(packages)} >/dev/null")

    def use_docker(self, image_archive: Path) -> None:
        """Debian's Docker on the host, the user in its group (which may use the daemon), the
        `docker load` archive of the steps' image loaded (no registry is reachable here)."""
        self.install("docker.io")
        self.host.exec("usermod", "-a", "-G", "docker", "someone")
        (self.host.root / "var/tmp/image.tar").write_bytes(image_archive.read_bytes())
        self.host.exec("docker", "load", "-i", "/var/tmp/image.tar")

    def use_podman(self, image_archive: Path) -> None:
        """Debian's Podman and no Docker: rootless, the user's subordinate ids, the steps' image
        loaded into the user's own storage."""
        self.install("podman", "uidmap", "slirp4netns")
        self.host.exec("sh", "-c", "[ ! -e /dev/fuse ] || chmod 0666 /dev/fuse")  # as udev makes it on a machine
        self.host.exec("sh", "-c", "grep -q '^someone:' /etc/subuid || "
                                   "usermod --add-subuids 200000-265535 --add-subgids 200000-265535 someone")
        (self.host.root / "var/tmp/image.tar").write_bytes(image_archive.read_bytes())
        self("podman load -q -i /var/tmp/image.tar")

    def run_container_workflow(self, cwl_airflow: str) -> None:
        """DOCKER_WORKFLOW through `cwl_airflow run` (the command as the shell gives it): its outputs."""
        out = self(f'cd "$HOME" && echo \'{{"name": "docker"}}\' > docker.json && {cwl_airflow} run --quiet '
                   f'--outdir "$HOME/docker-out" /var/tmp/{DOCKER_WORKFLOW.name} docker.json')
        outputs = {name: unquote(urlsplit(file["location"]).path) for name, file in json.loads(out.stdout).items()}
        assert self(f'cat "{outputs["shouted"]}"').stdout == "HELLO DOCKER\n"
        assert self(f'cat "{outputs["length"]}"').stdout.strip() == "13"

    def run_in_docker(self, cwl_airflow: str) -> None:
        """run_container_workflow, its steps in containers of the test image (the daemon's events)."""
        since = self.host.exec("date", "+%s").stdout.strip()
        self.run_container_workflow(cwl_airflow)
        until = self.host.exec("date", "+%s").stdout.strip()
        started = self.host.exec("docker", "events", "--since", since, "--until", until, "--filter", "event=start",
                                 "--format", "{{.From}}").stdout.split()
        assert started == ["appliance-test/busybox:latest"] * 3, started

    def start_user_manager(self) -> str:
        """The user's own service manager, as a login or lingering starts it; the environment its
        `systemctl --user` commands need."""
        self.install("libpam-systemd")  # a minimal Debian has none (it gives a user manager its XDG_RUNTIME_DIR)
        # lingering (loginctl enable-linger) is refused by Debian 13's logind in a container
        self.host.exec("systemctl", "start", f"user@{self.uid}.service")
        runtime = f"XDG_RUNTIME_DIR=/run/user/{self.uid}"
        deadline = time.monotonic() + 60
        while self(f"{runtime} systemctl --user is-system-running", check=False).stdout.strip() not in (
                "running", "degraded"):
            assert time.monotonic() < deadline, f"{self.suite}: no user manager"
            time.sleep(1)
        return runtime

    def wait_in_journal(self, unit: str, text: str, count: int = 1, timeout: float = 240) -> str:
        """The journal of the user's unit once it holds `text` `count` times."""
        deadline, journal = time.monotonic() + timeout, ""
        while journal.count(text) < count:
            assert time.monotonic() < deadline, f"{self.suite}: no {text!r} from {unit}:\n{journal[-3000:]}"
            time.sleep(2)
            journal = self.host.exec("journalctl", "--no-pager", "-o", "cat", f"_UID={self.uid}",
                                     f"_SYSTEMD_USER_UNIT={unit}", check=False).stdout
        return journal

    def processes_but_the_user_manager(self) -> list[str]:
        return [p for p in self.processes() if "(sd-pam)" not in p and "systemd --user" not in p]

    def wait_for(self, path: str, text: str, count: int = 1, timeout: float = 240) -> str:
        """The file's text once it holds `text` `count` times."""
        deadline, content = time.monotonic() + timeout, ""
        while content.count(text) < count:
            assert time.monotonic() < deadline, f"{self.suite}: no {text!r} in {path}:\n{content[-3000:]}"
            time.sleep(2)
            content = self(f'cat "{path}"', check=False).stdout
        return content
