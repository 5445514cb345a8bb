"""The tasks' own workflows, run with cwltool in order as the DAG would: same outputs as cwltool
running the whole workflow (scatter, when, subworkflow, JavaScript, defaults)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cwltool.context import RuntimeContext

from cwl_airflow.extensions.operators import resolve_paths, strip_cwltool_keys
from cwl_airflow.workflow import CWLWorkflow

CWL = Path(__file__).resolve().parents[1] / "cwl"


def run_like_the_dag(path: Path, job: dict, tmp: Path) -> dict:
    wf = CWLWorkflow(path)
    values = wf.validate_job(resolve_paths(job, path.parent))
    done: set[str] = set()
    steps = {s.name: s for s in wf.dag_steps()}
    while len(done) < len(steps):
        for name, step in steps.items():
            if name in done or not step.upstream <= done:
                continue
            process, sources = wf.step_process(name)
            out = wf.execute(process, {f"src{i}": values.get(s) for i, s in enumerate(sources)},
                             RuntimeContext({"outdir": str(tmp / name), "use_container": False, "move_outputs": "move"}))
            values.update({f"{name}/{k}": v for k, v in out.items()})
            done.add(name)
    process, sources = wf.gather_process()
    out = wf.execute(process, {f"src{i}": values.get(s) for i, s in enumerate(sources)},
                     RuntimeContext({"outdir": str(tmp / "out"), "use_container": False, "move_outputs": "move"}))
    return strip_cwltool_keys(out)


def cwltool(path: Path, job: dict, tmp: Path) -> dict:
    (tmp / "job.json").write_text(json.dumps(job))
    result = subprocess.run([sys.executable, "-m", "cwltool", "--quiet", "--no-container", "--outdir", str(tmp / "ref"),
                             str(path), str(tmp / "job.json")], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("job", [{"words": ["a", "b"], "shout": True}, {"words": ["x"]}])
def test_features_match_cwltool(job, tmp_path):
    assert run_like_the_dag(CWL / "features.cwl", job, tmp_path) == cwltool(CWL / "features.cwl", job, tmp_path)


def test_files_flow_between_steps_and_land_in_the_output_folder(tmp_path):
    out = run_like_the_dag(CWL / "conformance" / "lines.cwl", {"text": {"class": "File", "path": "lines.txt"}}, tmp_path)
    assert out == {"numbered": ["> first", "> second"]}
    out = run_like_the_dag(CWL / "conformance" / "echo.cwl", {"message": "hi"}, tmp_path)
    assert out["out"]["location"] == (tmp_path / "out" / "out.txt").as_uri()
    assert (tmp_path / "out" / "out.txt").read_text() == "hi\n"
