"""What an uploaded document may make the server read: itself and the uploads, nothing else."""

from __future__ import annotations

import gzip
import http.server
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from cwl_airflow.workflow import CWLError, CWLWorkflow

SECRET = "TOPSECRET-password"
TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs: []
outputs: []
"""


@pytest.fixture
def server(tmp_path):
    """A server's folders: its secrets, the uploads folder, a staged upload; and a local web service."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/airflow.env").write_text(f"PASSWORD={SECRET}\n")
    (tmp_path / "etc/tool.cwl").write_text(TOOL + f"doc: {SECRET}\n")
    (tmp_path / "uploads").mkdir()
    hits = []

    class Service(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(SECRET.encode())

        def log_message(self, *args):
            pass

    service = http.server.HTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{service.server_port}/", hits
    service.shutdown()


def upload(folder: Path, text: str) -> CWLWorkflow:
    staged = folder / "uploads/.staged.cwl"
    staged.write_text(text)
    return CWLWorkflow(staged, confined_to=(folder / "uploads",))


def step_running(run: str) -> str:
    return ("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
            f"steps:\n  s:\n    run: {run}\n    in: []\n    out: []\n")


@pytest.mark.parametrize("hostile", [
    lambda etc, url: step_running(f"{{$import: {etc}/tool.cwl}}"),
    lambda etc, url: step_running(f"{etc}/tool.cwl"),
    lambda etc, url: step_running(f"{{$import: {etc}/airflow.env}}"),
    lambda etc, url: TOOL + f"doc: {{$include: {etc}/airflow.env}}\n",
    lambda etc, url: TOOL + f"doc: {{$include: '{url}'}}\n",
    lambda etc, url: step_running(f"'{url}tool.cwl'"),
    lambda etc, url: TOOL + "doc: {$include: ../etc/airflow.env}\n",
])
def test_references_outside_the_upload_are_refused_without_their_content(server, hostile):
    folder, url, hits = server
    with pytest.raises(CWLError) as refused:
        upload(folder, hostile(folder / "etc", url))
    assert SECRET not in refused.value.reason
    assert hits == []  # the local service was never asked


BUILD = "  DockerRequirement: {dockerFile: 'FROM debian:stable-slim', dockerImageId: built}\n"


@pytest.mark.parametrize("document", [
    TOOL + "requirements:\n" + BUILD,
    TOOL + "hints:\n" + BUILD,  # cwltool would use a hint whenever Docker is there
    step_running("{class: CommandLineTool, baseCommand: echo, inputs: [], outputs: []}")
    + "requirements:\n" + BUILD,  # from the workflow, inherited by a step's tool
])
def test_an_image_build_is_refused_as_unsupported_with_the_reason(server, document):
    folder, _, _ = server
    with pytest.raises(CWLError) as refused:
        upload(folder, document)
    assert refused.value.unsupported and "dockerFile is not supported" in refused.value.reason
    upload(folder, TOOL + "requirements:\n  DockerRequirement: {dockerPull: 'debian:stable-slim'}\n")


def test_ontologies_on_the_network_are_not_fetched(server):
    folder, url, hits = server
    upload(folder, TOOL + f"$schemas: ['{url}edam.owl']\n")  # cwltool only warns about an unread ontology
    assert hits == []


def test_a_self_contained_document_and_uploaded_files_load(server):
    folder, _, _ = server
    (folder / "uploads/abc").mkdir()
    (folder / "uploads/abc/notes.txt").write_text("from the uploader\n")
    wf = upload(folder, TOOL + "doc: {$include: abc/notes.txt}\n")
    assert wf.process.tool["doc"] == "from the uploader\n"
    wf = upload(folder, step_running("{class: CommandLineTool, baseCommand: echo, inputs: [], outputs: []}"))
    assert wf.is_workflow


def test_a_link_out_of_the_uploads_is_refused(server):
    folder, _, _ = server
    (folder / "uploads/link.txt").symlink_to(folder / "etc/airflow.env")
    with pytest.raises(CWLError) as refused:
        upload(folder, TOOL + "doc: {$include: link.txt}\n")
    assert SECRET not in refused.value.reason


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def test_a_gzip_bomb_is_refused_before_it_inflates():
    from cwl_airflow.api import _gunzip

    bomb = gzip.compress(b"\0" * (256 << 20))  # 256 MiB in about 250 KiB
    started = time.monotonic()
    assert _gunzip(bomb, 16 << 20) is None
    assert time.monotonic() - started < 1
    assert _gunzip(gzip.compress(b"cwlVersion: v1.2\n"), 16 << 20) == b"cwlVersion: v1.2\n"
    with pytest.raises(zlib.error):
        _gunzip(gzip.compress(b"x" * 1000)[:20], 16 << 20)


def test_yaml_aliases_are_found_without_expanding_them():
    from cwl_airflow.api import _has_yaml_aliases

    assert len(BILLION_LAUGHS) < 700  # 9**9 items once expanded
    started = time.monotonic()
    assert _has_yaml_aliases(BILLION_LAUGHS.encode())
    assert time.monotonic() - started < 1
    assert not _has_yaml_aliases(b"a: &anchor 1\nb: 'not *an alias'\n")
    assert not _has_yaml_aliases(b"{unbalanced")  # left to the CWL loader to explain


def test_a_job_may_name_files_under_the_inputs_folder_and_data_roots_only(tmp_path, monkeypatch):
    from cwl_airflow.config import Settings
    from cwl_airflow.steps import check_job

    inputs, data, etc = tmp_path / "inputs", tmp_path / "data", tmp_path / "etc"
    for folder in (inputs, data, etc):
        folder.mkdir()
        (folder / "f.txt").write_text(f"{folder.name}\n")
    (inputs / "link.txt").symlink_to(etc / "f.txt")
    (tmp_path / "cat.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\n"
                                      "inputs: {f: {type: File, inputBinding: {}}}\noutputs: []\n")
    monkeypatch.setenv("AIRFLOW__CWL__INPUTS_FOLDER", str(inputs))
    monkeypatch.setenv("AIRFLOW__CWL__DATA_ROOTS", str(data))
    settings = Settings.load(use_airflow=False)
    wf = CWLWorkflow(tmp_path / "cat.cwl")

    def job(location):
        return {"f": {"class": "File", "location": location}}

    assert check_job(wf, job("f.txt"), settings)["f"]["location"] == (inputs / "f.txt").as_uri()
    check_job(wf, job((data / "f.txt").as_uri()), settings)
    for outside in ((etc / "f.txt").as_uri(), "link.txt", "../etc/f.txt", "https://example.org/f.txt"):
        with pytest.raises(CWLError, match="outside the inputs folder"):
            check_job(wf, job(outside), settings)
    with pytest.raises(CWLError, match="not found"):
        check_job(wf, job("missing.txt"), settings)


def test_the_client_writes_shared_objects_out_not_as_aliases():
    from cwl_airflow.api import _has_yaml_aliases
    from cwl_airflow.cli import _yaml

    shared = {"edam": "http://edamontology.org/"}
    assert not _has_yaml_aliases(_yaml({"$namespaces": shared, "steps": [{"$namespaces": shared}]}))


def test_uploads_parsed_at_once_each_get_their_dag(tmp_path):
    """The API server parses each upload in a request thread; Airflow's DAG context (the module
    being imported, the DAGs it registered) is one per process: two parses at once must still give
    each file its own DAG and no import error. Threads switch as often as they can, so that the
    parses interleave at every step."""
    from concurrent.futures import ThreadPoolExecutor

    from cwl_airflow.api import _parsed
    from cwl_airflow.extensions.cwldag import dag_file_text

    dag_files = []
    for n in range(40):
        (tmp_path / f"tool_{n}.cwl").write_text(TOOL + f"doc: tool {n}\n")
        dag_files.append(tmp_path / f"cwl_tool_{n}.py")
        dag_files[-1].write_text(dag_file_text(f"tool_{n}", tmp_path / f"tool_{n}.cwl"))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(2) as pool:
            bags = list(pool.map(_parsed, dag_files))
    finally:
        sys.setswitchinterval(interval)
    assert {path.name: bag.import_errors for path, bag in zip(dag_files, bags) if bag.import_errors} == {}
    assert [sorted(bag.dags) for bag in bags] == [[f"tool_{n}"] for n in range(40)]
