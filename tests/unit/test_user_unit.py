"""The user unit that `cwl-airflow user-unit` writes, as systemd reads it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cwl_airflow.user_unit import unit_text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_a_launcher_at_a_path_with_spaces_and_specifiers_is_one_command(tmp_path):
    launcher = tmp_path / "my tools 100%" / "$bundle" / "bin" / "cwl-airflow"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    unit = tmp_path / "cwl-airflow.service"
    unit.write_text(unit_text(str(launcher), {"CWL_AIRFLOW_HOME": Path("/home/a b/100%")}, 8090))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert "--port 8090" in unit.read_text()
