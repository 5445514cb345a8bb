"""Unit tests of the cwl_airflow package; they need Airflow and cwltool (the .venv-cwl venv of
`make deps`), no test host. AIRFLOW_HOME is a fresh folder per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_home = tempfile.mkdtemp(prefix="cwl-unit-airflow-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CWL__QUEUES_FILE"] = str(Path(_home) / "queues.yaml")
os.environ["XDG_CACHE_HOME"] = str(Path(_home) / "cache")  # the client's schema cache
