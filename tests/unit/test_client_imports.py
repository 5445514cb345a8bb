"""The cwl-airflow client module imports without cwltool: the host tests (this venv) use its
Client, and its commands other than `run` need neither cwltool nor schema-salad."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_client_imports_without_cwltool():
    probe = "import importlib.util, cwl_airflow.cli; print(importlib.util.find_spec('schema_salad') is None)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # src/, as pytest has it
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True", "this venv has schema-salad: the check proves nothing here"
