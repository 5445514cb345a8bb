"""CWLDAG: the DAG's shape from a workflow, queues, errors for bad CWL and bad jobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cwl_airflow import queues
from cwl_airflow.extensions.cwldag import CWLDAG
from cwl_airflow.extensions.operators import _CWLOperator
from cwl_airflow.listener import CWL_OPERATORS
from cwl_airflow.workflow import CWLError, CWLWorkflow

CWL = Path(__file__).resolve().parents[1] / "cwl"


def edges(dag) -> set[tuple[str, str]]:
    return {(up, task.task_id) for task in dag.tasks for up in task.upstream_task_ids}


def test_multi_step_workflow_becomes_one_task_per_step_wired_by_data():
    dag = CWLDAG(dag_id="three", workflow=str(CWL / "three-step.cwl"))
    assert set(dag.task_ids) == {"CWLJobDispatcher", "greet", "shout", "count", "CWLJobGatherer"}
    assert edges(dag) == {("CWLJobDispatcher", "greet"), ("greet", "shout"), ("shout", "count"),
                          ("count", "CWLJobGatherer")}


def test_parallel_steps_and_subworkflow():
    dag = CWLDAG(dag_id="features", workflow=str(CWL / "features.cwl"))
    assert edges(dag) == {("CWLJobDispatcher", "echo"), ("echo", "upper"), ("echo", "join"),
                          ("upper", "CWLJobGatherer"), ("join", "CWLJobGatherer")}


def test_a_single_tool_is_one_task_that_runs_the_whole_workflow(tmp_path):
    dag = CWLDAG(dag_id="tool", workflow=str(CWL / "conformance" / "echo.cwl"))
    assert dag.task_ids == ["echo"] and dag.tasks[0].gives_outputs


def test_the_scheduler_knows_every_cwl_operator_by_name():
    def subclasses(cls):
        return {cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))}

    assert {cls.__name__ for cls in subclasses(_CWLOperator) - {_CWLOperator}} == CWL_OPERATORS


def test_upstream_constructor_and_dag_arguments_pass_through():
    dag = CWLDAG(workflow=str(CWL / "three-step.cwl"), dag_id="args", default_args={"retries": 3},
                 tags=["mine"], schedule="@daily", max_active_runs=2)
    assert (dag.dag_id, dag.tags, dag.max_active_runs) == ("args", {"mine"}, 2)
    assert all(t.retries == 3 for t in dag.tasks)
    assert dag.fileloc == __file__
    assert CWLDAG(workflow=str(CWL / "three-step.cwl")).dag_id == "three-step"


def test_broken_cwl_names_the_file_and_the_reason():
    with pytest.raises(CWLError) as err:
        CWLDAG(dag_id="broken", workflow=str(CWL / "broken.cwl"))
    assert str(CWL / "broken.cwl") in str(err.value) and "nowhere/out" in str(err.value)
    with pytest.raises(CWLError, match="No such file|does not exist|not found"):
        CWLDAG(dag_id="missing", workflow="/nonexistent/workflow.cwl")


def test_a_job_missing_a_required_input_is_refused_with_its_name():
    wf = CWLWorkflow(CWL / "three-step.cwl")
    with pytest.raises(CWLError, match="Missing required input parameter 'name'"):
        wf.prepare_job({}, CWL)
    with pytest.raises(CWLError, match="name"):
        wf.prepare_job({"name": 42}, CWL)
    assert CWLWorkflow(CWL / "features.cwl").prepare_job({"words": ["a"]}, CWL) == {"words": ["a"], "shout": False}


def test_queue_is_the_smallest_that_fits():
    available = [queues.Queue("default", 1, 2048), queues.Queue("big", 8, 32768), queues.Queue("mid", 4, 8192)]
    available.sort(key=lambda q: (q.cpus, q.ram))
    assert queues.choose(available, None, None, "default") == "default"
    assert queues.choose(available, 2, None, "default") == "mid"
    assert queues.choose(available, 1, 4096, "default") == "mid"
    assert queues.choose(available, 4, 16000, "default") == "big"
    with pytest.raises(queues.QueueError, match="no queue has 16 cpus"):
        queues.choose(available, 16, None, "default")
    assert queues.choose([], 16, None, "default") == "default"  # no queues.yaml: one queue for all


def test_dag_puts_steps_on_queues_by_resource_requirement():
    path = Path(os.environ["AIRFLOW__CWL__QUEUES_FILE"])
    path.write_text("default: {cpus: 1, ram: 1024}\nbig: {cpus: 4, ram: 8192}\n")
    try:
        dag = CWLDAG(dag_id="queues", workflow=str(CWL / "features.cwl"))
        assert dag.get_task("join").queue == "big"  # its subworkflow's step needs coresMin 2
        assert dag.get_task("echo").queue == "default"
        path.write_text("default: {cpus: 1}\n")
        with pytest.raises(queues.QueueError, match="queue 'default' needs numbers cpus and ram"):
            queues.load(path)
    finally:
        path.unlink()


ONTOLOGY = """@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
<http://example.org/formats#fasta> rdfs:subClassOf <http://example.org/formats#sequence> .
"""
FORMATTED = """cwlVersion: v1.2
class: CommandLineTool
$namespaces: {fmt: "http://example.org/formats#"}
$schemas: [formats.ttl]
baseCommand: cat
inputs: {reads: {type: File, format: "fmt:sequence", inputBinding: {}}}
outputs: {out: stdout}
"""


def test_the_dag_is_built_without_parsing_ontologies_which_jobs_are_still_checked_against(tmp_path, monkeypatch):
    """Every parse of a DAG file loads its workflow (API server, DAG processor, each task): the
    ontologies of `$schemas` (EDAM: seconds each time) are needed only where formats are checked."""
    import rdflib

    (tmp_path / "formats.ttl").write_text(ONTOLOGY)
    (tmp_path / "tool.cwl").write_text(FORMATTED)
    parsed = []
    parse = rdflib.Graph.parse

    def counted_parse(graph, *args, **kwargs):
        parsed.append(kwargs.get("publicID"))
        return parse(graph, *args, **kwargs)

    monkeypatch.setattr(rdflib.Graph, "parse", counted_parse)
    CWLDAG(dag_id="formats", workflow=str(tmp_path / "tool.cwl"))
    assert parsed == []

    (tmp_path / "reads.fa").write_text(">x\nACGT\n")
    wf = CWLWorkflow(tmp_path / "tool.cwl")
    reads = {"class": "File", "location": "reads.fa"}
    wf.prepare_job({"reads": {**reads, "format": "fmt:fasta"}}, tmp_path)  # a subclass, by the ontology
    with pytest.raises(CWLError, match="format"):
        wf.prepare_job({"reads": {**reads, "format": "fmt:protein"}}, tmp_path)
    assert len(parsed) == 1
