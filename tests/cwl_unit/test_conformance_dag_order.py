"""The CWL v1.2 suite's required tests through the DAG's task code, in this process and in DAG
order (tests/cwl_unit/dag_order.py), without containers: every test that plain cwltool passes
here passes. The suite's folder comes from CWL_SUITE (`make unit` passes ../shared/cwl-v1.2).
Tests whose tools need Docker are left to tests/test_conformance.py, on a host with Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cwltest.compare import CompareFail, compare
from cwltool.errors import UnsupportedRequirement

from cwl_airflow.workflow import CWLError
from dag_order import load_job, run_like_the_dag

SUITE = Path(os.environ.get("CWL_SUITE", Path(__file__).resolve().parents[2] / "../shared/cwl-v1.2")).resolve()


def _tests() -> list:
    path = SUITE / "conformance_tests.yaml"
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no CWL suite at {SUITE} (set CWL_SUITE)"))]
    return [pytest.param(t, id=t["id"]) for t in yaml.safe_load(path.read_text()) if "required" in t.get("tags", [])]


def _cwltool_passes(test: dict, tmp: Path) -> bool:
    """Whether plain cwltool (without containers, as here) passes the test."""
    args = [sys.executable, "-m", "cwltool", "--quiet", "--no-container", "--outdir", str(tmp / "ref"), test["tool"],
            *([test["job"]] if test.get("job") else [])]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if test.get("should_fail"):
        return result.returncode != 0
    try:
        compare(test.get("output"), json.loads(result.stdout or "null"))
    except (CompareFail, ValueError):
        return False
    return result.returncode == 0


@pytest.mark.parametrize("test", _tests())
def test_required_test_through_the_dags_tasks(test, tmp_path, monkeypatch):
    monkeypatch.chdir(SUITE)
    job_path = Path(test["job"]).resolve() if test.get("job") else None
    job = load_job(job_path) if job_path else {}
    try:
        out = run_like_the_dag(test["tool"], job, job_path.parent if job_path else SUITE, tmp_path / "tmp", tmp_path / "out")
        failure = None
    except UnsupportedRequirement as err:
        if "--no-container" in str(err):
            pytest.skip("needs Docker: tests/test_conformance.py runs it")
        failure = err
    except Exception as err:  # cwltool's and our own failures alike: compared with cwltool below
        failure = err
    if test.get("should_fail"):
        assert failure is not None or not _cwltool_passes(test, tmp_path), "cwltool fails this test; the DAG did not"
        return
    try:
        if failure is not None:
            raise failure
        compare(test.get("output"), out)
    except (CompareFail, CWLError, Exception) as err:
        if not _cwltool_passes(test, tmp_path):
            pytest.skip(f"plain cwltool does not pass it either: {err}")
        raise
