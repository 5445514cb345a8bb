"""The client's cache of cwltool's schemas (cwl_airflow.schemas): each case in a new process, as
`cwl-airflow run` starts one."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from cwl_airflow import schemas

TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs:
  message: {type: string, default: %s, inputBinding: {position: 1}}
outputs: []
"""

# a new process: load the schemas (cwl-airflow run's way), then the document; with
# `parse=False` cwltool cannot parse its schemas, so they must come from the cache
LOAD = """
import json, sys
from cwltool import process
from cwl_airflow import schemas
from cwl_airflow.workflow import CWLError, CWLWorkflow

if sys.argv[2] == "False":
    def no_parsing(*args, **kwargs):
        raise AssertionError("cwltool parsed its schemas")
    process.load_schema = no_parsing
schemas.load()
try:
    print(json.dumps(CWLWorkflow(sys.argv[1]).process.tool, sort_keys=True, default=str))
except CWLError as err:
    print(json.dumps({"error": err.reason}))
"""


def load(document: Path, cache: Path, parse: bool = True) -> dict:
    result = subprocess.run([sys.executable, "-c", LOAD, str(document), str(parse)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cache), **_python_env()})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _python_env() -> dict[str, str]:
    return {name: os.environ[name] for name in ("PYTHONPATH", "AIRFLOW_HOME") if name in os.environ}


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    path = tmp_path / "echo.cwl"
    path.write_text(TOOL % "one")
    return path


def test_the_second_run_takes_the_schemas_from_the_cache_and_loads_the_same(tool, tmp_path):
    cache = tmp_path / "cache"
    parsed = load(tool, cache)
    pickled = schemas.cache_file(cache)
    assert pickled.stat().st_mode & 0o777 == 0o600
    assert load(tool, cache, parse=False) == parsed
    invalid = tmp_path / "invalid.cwl"
    invalid.write_text(TOOL.replace("type: string", "type: strin") % "one")
    error = load(invalid, cache, parse=False)["error"]
    assert "strin" in error and error == load(invalid, tmp_path / "another cache")["error"]


def test_an_edited_document_is_read_again(tool, tmp_path):
    cache = tmp_path / "cache"
    assert load(tool, cache)["inputs"][0]["default"] == "one"
    tool.write_text(TOOL % "two")
    assert load(tool, cache, parse=False)["inputs"][0]["default"] == "two"


class Planted:
    """A pickle that writes a file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "loaded"))


@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_a_cache_others_could_write_is_not_loaded_but_made_again(tool, tmp_path, mode):
    cache = tmp_path / "cache"
    planted = schemas.cache_file(cache)
    planted.parent.mkdir(parents=True)
    marker = tmp_path / "marker"
    planted.write_bytes(pickle.dumps(Planted(marker)))
    planted.chmod(mode)
    load(tool, cache)
    assert not marker.exists()
    assert planted.stat().st_mode & 0o777 == 0o600
    assert load(tool, cache, parse=False)["inputs"][0]["default"] == "one"


def test_a_broken_cache_is_made_again(tool, tmp_path):
    cache = tmp_path / "cache"
    broken = schemas.cache_file(cache)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a pickle")
    broken.chmod(0o600)
    assert load(tool, cache)["inputs"][0]["default"] == "one"
    assert load(tool, cache, parse=False)["inputs"][0]["default"] == "one"
