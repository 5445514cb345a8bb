"""The tasks' own workflows, run with cwltool in order as the DAG would: same outputs as cwltool
running the whole workflow (scatter, when, subworkflow, JavaScript, defaults)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cwl_airflow import cli
from dag_order import run_like_the_dag

CWL = Path(__file__).resolve().parents[1] / "cwl"


def cwltool(path: Path, job: dict, tmp: Path) -> dict:
    (tmp / "job.json").write_text(json.dumps(job))
    result = subprocess.run([sys.executable, "-m", "cwltool", "--quiet", "--no-container", "--outdir", str(tmp / "ref"),
                             str(path), str(tmp / "job.json")], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("job", [{"words": ["a", "b"], "shout": True}, {"words": ["x"]}])
def test_features_match_cwltool(job, tmp_path):
    assert run_like_the_dag(CWL / "features.cwl", job, CWL, tmp_path, tmp_path / "out") == cwltool(CWL / "features.cwl", job, tmp_path)


def test_files_flow_between_steps_and_land_in_the_output_folder(tmp_path):
    out = run_like_the_dag(CWL / "conformance" / "lines.cwl", {"text": {"class": "File", "path": "lines.txt"}},
                           CWL / "conformance", tmp_path, tmp_path / "out")
    assert out == {"numbered": ["> first", "> second"]}
    out = run_like_the_dag(CWL / "conformance" / "echo.cwl", {"message": "hi"}, CWL, tmp_path, tmp_path / "out")
    assert out["out"]["location"] == (tmp_path / "out" / "out.txt").as_uri()
    assert (tmp_path / "out" / "out.txt").read_text() == "hi\n"


def test_a_jobs_requirements_apply_to_a_packed_document(tmp_path):
    """Uploads are packed (`$graph`, the process `#main`): the job's `cwl:requirements` must
    reach that process, as they reach the file it was packed from."""
    packed = {"cwlVersion": "v1.2", "$graph": [{
        "class": "CommandLineTool", "id": "#main", "baseCommand": ["sh", "-c", "echo $TEST_ENV"],
        "inputs": [{"id": "#main/in", "type": "string"}], "stdout": "out",
        "outputs": [{"id": "#main/out", "type": "File", "outputBinding": {"glob": "out"}}]}]}
    (tmp_path / "packed.cwl").write_text(json.dumps(packed))
    job = {"in": "from the job", "cwl:requirements": [
        {"class": "EnvVarRequirement", "envDef": [{"envName": "TEST_ENV", "envValue": "$(inputs.in)"}]}]}
    out = run_like_the_dag(str(tmp_path / "packed.cwl"), job, tmp_path, tmp_path / "tmp", tmp_path / "out")
    assert Path(out["out"]["location"].removeprefix("file://")).read_text() == "from the job\n"


IN_PLACE = """cwlVersion: v1.2
class: Workflow
requirements: {InlineJavascriptRequirement: {}}
inputs: []
outputs:
  seen: {type: "string[]", outputSource: look/seen}
  made: {type: Directory, outputSource: make/dir}
  changed: {type: Directory, outputSource: change/dir}
steps:
  make:
    in: {}
    out: [dir]
    run:
      class: CommandLineTool
      inputs: []
      arguments: [mkdir, made]
      outputs: {dir: {type: Directory, outputBinding: {glob: made}}}
  change:
    in: {dir: make/dir}
    out: [dir]
    run:
      class: CommandLineTool
      requirements:
        InitialWorkDirRequirement: {listing: [{entry: $(inputs.dir), entryname: inp, writable: true}]}
        InplaceUpdateRequirement: {inplaceUpdate: true}
      inputs: {dir: Directory}
      arguments: [touch, inp/added]
      outputs: {dir: {type: Directory, outputBinding: {glob: inp}}}
  look:
    in: {dir: make/dir, after: change/dir}
    out: [seen]
    run:
      class: ExpressionTool
      inputs: {dir: {type: Directory, loadListing: shallow_listing}, after: Directory}
      outputs: {seen: "string[]"}
      expression: '$({"seen": inputs.dir.listing.map(function(f) { return f.basename; })})'
"""


def test_a_later_step_sees_what_an_earlier_one_changed_in_place(tmp_path):
    """The first step's listing went through XCom before the second step added a file to its
    directory in place: the third step lists that directory as it is now."""
    (tmp_path / "in-place.cwl").write_text(IN_PLACE)
    out = run_like_the_dag(str(tmp_path / "in-place.cwl"), {}, tmp_path, tmp_path / "tmp", tmp_path / "out")
    assert out["seen"] == ["added"]
    # one directory, changed in place: both outputs name it (cwltool's answer)
    assert out["made"]["location"] == out["changed"]["location"]


# the suite's iwd-subdir: each tool gives its input and its output one id
SAME_ID_TOOLS = {
    "subdir.cwl": """cwlVersion: v1.2
class: CommandLineTool
requirements: {InitialWorkDirRequirement: {listing: [{entry: $(inputs.dir), writable: false}]}}
inputs: {dir: Directory}
outputs: {dir: {type: Directory, outputBinding: {glob: dir/inner}}}
baseCommand: "true"
""",
    "passthrough.cwl": """cwlVersion: v1.2
class: CommandLineTool
requirements: {InitialWorkDirRequirement: {listing: [{entry: $(inputs.dir), writable: false}]}}
inputs: {dir: Directory}
outputs: {dir: {type: Directory, outputBinding: {glob: $(inputs.dir.basename)}}}
baseCommand: "true"
""",
    "workflow.cwl": """cwlVersion: v1.2
class: Workflow
inputs: {dir: Directory}
outputs: {out: {type: Directory, outputSource: again/dir}}
steps:
  inner: {run: subdir.cwl, in: {dir: dir}, out: [dir]}
  again: {run: passthrough.cwl, in: {dir: inner/dir}, out: [dir]}
"""}


def test_a_tool_whose_input_and_output_share_an_id_is_packed_as_it_is(tmp_path):
    """cwltool runs such a tool (with a warning); packing it for an upload made an output an
    $import of its input, so the step's output was missing."""
    from cwl_airflow import cli
    from cwl_airflow.workflow import CWLWorkflow

    for name, text in SAME_ID_TOOLS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "packed.cwl").write_bytes(cli._yaml(cli._packed(CWLWorkflow(tmp_path / "workflow.cwl"))))
    (tmp_path / "dir/inner").mkdir(parents=True)
    (tmp_path / "dir/inner/file").write_text("x")
    job = {"dir": {"class": "Directory", "location": "dir"}}
    out = run_like_the_dag(str(tmp_path / "packed.cwl"), job, tmp_path, tmp_path / "tmp", tmp_path / "out")
    assert out["out"]["basename"] == "inner"
    assert [entry["basename"] for entry in out["out"]["listing"]] == ["file"]


def test_the_client_looks_at_a_run_often_at_first_then_seldom():
    waits = cli.poll_waits()
    first = [next(waits) for _ in range(30)]
    assert first == [0.1] * 30  # the first 3 s: a short run's end is seen within 0.1 s
    later, elapsed, looks = [], 3.0, 0
    while elapsed < 3600:
        later.append(next(waits))
        elapsed += later[-1]
        looks += 1
    assert later == sorted(later) and max(later) == 2.0
    assert looks < 1900  # an hour's run: about one look every 2 s
