"""cwl-airflow user-unit: `cwl-airflow up` as a systemd user service, so that the user's
service manager starts it at login (or boot, with lingering), restarts it when a daemon dies,
and stops it with `systemctl --user stop cwl-airflow`.

The unit runs the command that started this installation ($CWL_AIRFLOW_LAUNCHER: the
tarball's bin/cwl-airflow, or the AppImage itself), `Type=simple`: `up` stays in the
foreground as the parent of every daemon, and stops them on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cwl_airflow.up import STOP_SECONDS, UpError, homes

UNIT_NAME = "cwl-airflow.service"
UNIT = """\
# Written by `cwl-airflow user-unit`; run it again after moving or replacing the installation.
[Unit]
Description=cwl-airflow: Airflow and the CWL API on http://127.0.0.1:{port}

[Service]
Type=simple
Environment={homes}
ExecStart={command} up --port {port}{options}
# SIGTERM to every process: up and its daemons stop; the AppImage's FUSE server ignores it and
# unmounts when the last process holding the image ends. (KillMode=mixed would SIGKILL the rest
# the moment up exits: the server too, leaving its mount behind.) What is left after the timeout
# is killed.
KillMode=control-group
TimeoutStopSec={timeout}
Restart=on-failure
RestartSec=5
# a refusal (busy port, another up, an unwritable home) is not cured by restarting
RestartPreventExitStatus=2

[Install]
WantedBy=default.target
"""


def _quoted(word: str) -> str:
    """One word of a unit file line: quoted, with systemd's specifiers escaped (a command path has
    no variables)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def unit_text(launcher: str, homes: dict[str, Path], port: int, no_container: bool = False) -> str:
    return UNIT.format(port=port, homes=" ".join(_quoted(f"{name}={path}") for name, path in homes.items()),
                       command=_quoted(launcher), timeout=STOP_SECONDS + 30,
                       options=" --no-container" if no_container else "")


def install(port: int, start: bool, no_container: bool = False) -> str:
    """Write the unit into the user's systemd folder and (if asked) enable and start it; what was done."""
    launcher = os.environ.get("CWL_AIRFLOW_LAUNCHER")
    if not launcher:
        raise UpError("CWL_AIRFLOW_LAUNCHER not set: run the bundle's bin/cwl-airflow (or the AppImage)")
    home, airflow_home = homes()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = config / "systemd" / "user" / UNIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(launcher, {"CWL_AIRFLOW_HOME": home.resolve(), "AIRFLOW_HOME": airflow_home.resolve()},
                              port, no_container))
    if not start:
        return f"wrote {path}; start it with: systemctl --user enable --now {UNIT_NAME}"
    if not shutil.which("systemctl"):
        raise UpError(f"wrote {path}, but there is no systemctl here to start it")
    for command in (["daemon-reload"], ["enable", "--now", UNIT_NAME]):
        done = subprocess.run(["systemctl", "--user", *command], capture_output=True, text=True)
        if done.returncode != 0:
            raise UpError(f"wrote {path}, but `systemctl --user {' '.join(command)}` failed: "
                          f"{done.stderr.strip() or done.stdout.strip()} (is a user manager running? "
                          "`loginctl enable-linger` starts one without a login)")
    return (f"wrote {path}, enabled and started it; its log: journalctl --user -u {UNIT_NAME}; "
            f"stop it with: systemctl --user stop {UNIT_NAME}")
