"""A CWL process as the DAG sees it, and the one-step workflows each task hands to cwltool.

A top-level CommandLineTool or ExpressionTool is wrapped in a one-step workflow, so every DAG
has the same shape: dispatcher -> one task per step (wired by the steps' sources) -> gatherer.
A task runs its step as a workflow of its own whose inputs are the step's sources; cwltool
then does everything CWL defines (defaults, valueFrom, linkMerge, pickValue, scatter, when,
subworkflows). The gatherer runs a workflow without steps whose outputs are the original
workflow's outputs, so cwltool also evaluates those and moves the files to the output folder.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import UnsupportedRequirement, WorkflowException
from cwltool.executors import SingleJobExecutor
from cwltool.load_tool import fetch_document, make_tool, resolve_and_validate_document
from cwltool.process import Process
from cwltool.utils import aslist
from cwltool.workflow import Workflow, WorkflowStep, default_make_tool
from schema_salad.exceptions import ValidationException
from schema_salad.ref_resolver import file_uri
from schema_salad.sourceline import cmap

log = logging.getLogger(__name__)
WRAPPER = "cwl-airflow-wrapper"  # fragment of the workflow that wraps a top-level tool


class CWLError(Exception):
    """A CWL document or job that cwltool refuses; `unsupported` marks a feature it lacks."""

    def __init__(self, reason: str, unsupported: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unsupported = unsupported


@dataclass
class Step:
    """One task of the DAG."""

    name: str  # the CWL step id relative to the workflow: the task id
    upstream: set[str] = field(default_factory=set)  # steps whose outputs it reads
    cores: float | None = None  # ResourceRequirement coresMin / ramMin (MiB), when static
    ram: float | None = None


def _loading_context() -> LoadingContext:
    return LoadingContext({"construct_tool_object": default_make_tool, "do_update": True})


def _relative(parent_id: str, uri: str) -> str:
    """`file:///w.cwl#step/out` -> `step/out`, also inside packed documents (`#main/step/out`)."""
    frag = uri.split("#", 1)[1] if "#" in uri else uri
    parent = parent_id.split("#", 1)[1] if "#" in parent_id else ""
    return frag[len(parent) + 1 :] if parent and frag.startswith(parent + "/") else frag


class CWLWorkflow:
    """A loaded CWL document: its steps for the DAG, and runners for the tasks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        try:
            context, document, uri = fetch_document(file_uri(str(self.path)), _loading_context())
            self.loading_context, uri = resolve_and_validate_document(context, document, uri)
            process = make_tool(uri, self.loading_context)
            self.tool = process if isinstance(process, Workflow) else self._wrap(process)
        except UnsupportedRequirement as err:
            raise CWLError(str(err), unsupported=True) from None
        except (ValidationException, WorkflowException, OSError) as err:
            raise CWLError(str(err)) from None
        self.id: str = self.tool.tool["id"]
        self.process = process  # what the user's job is validated against
        self.steps = {self._name(s): s for s in self.tool.steps}

    def _name(self, step: WorkflowStep) -> str:
        return _relative(self.id, step.id)

    def _wrap(self, tool: Process) -> Workflow:
        """A one-step workflow around a top-level tool."""
        base = tool.tool["id"].split("#", 1)[0]
        wf_id = f"{base}#{WRAPPER}"
        step_name = re.sub(r"\W", "_", Path(base).stem) or "tool"
        keep = ("type", "default", "format", "secondaryFiles", "streamable", "loadContents", "label", "doc")

        def port(p: dict[str, Any], **extra: Any) -> dict[str, Any]:
            return {"id": f"{wf_id}/{_relative(tool.tool['id'], p['id'])}", **{k: p[k] for k in keep if k in p}, **extra}

        step_id = f"{wf_id}/{step_name}"
        names = [_relative(tool.tool["id"], i["id"]) for i in tool.tool["inputs"]]
        outs = [_relative(tool.tool["id"], o["id"]) for o in tool.tool["outputs"]]
        step = {
            "id": step_id,
            "run": tool.tool["id"],
            "in": [{"id": f"{step_id}/{n}", "source": f"{wf_id}/{n}"} for n in names],
            "out": [f"{step_id}/{o}" for o in outs],
        }
        doc = {
            "class": "Workflow",
            "id": wf_id,
            "cwlVersion": tool.metadata.get("cwlVersion", "v1.2"),
            "inputs": [port(i) for i in tool.tool["inputs"]],
            "outputs": [port(o, outputSource=f"{step_id}/{n}") for o, n in zip(tool.tool["outputs"], outs)],
            "steps": [step],
        }
        return self._make(doc)

    def _make(self, document: dict[str, Any]) -> Workflow:
        """A Workflow object from a document built here (cwltool wants line numbers on it)."""
        doc = cmap(document, fn=str(self.path))
        self.loading_context.loader.idx[doc["id"]] = doc
        return self.loading_context.construct_tool_object(doc, self.loading_context)

    # -- the DAG's view ------------------------------------------------------------------------

    def dag_steps(self) -> list[Step]:
        result = []
        for name, step in self.steps.items():
            upstream = set()
            for port in step.tool["in"]:
                for source in aslist(port.get("source")):
                    rel = _relative(self.id, source)
                    if "/" in rel:
                        upstream.add(rel.rsplit("/", 1)[0])
            cores, ram = _resources(step.embedded_tool)
            result.append(Step(name, upstream, cores, ram))
        return result

    def input_names(self) -> list[str]:
        return [_relative(self.id, i["id"]) for i in self.tool.tool["inputs"]]

    # -- the tasks' view -----------------------------------------------------------------------

    def validate_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job with defaults filled in; CWLError names what is missing or wrong."""
        try:
            builder = self.process._init_job(copy.deepcopy(job), RuntimeContext())
        except (ValidationException, WorkflowException) as err:
            raise CWLError(f"invalid job: {err}") from None
        names = {_relative(self.process.tool["id"], i["id"]) for i in self.process.tool["inputs"]}
        return {k: v for k, v in builder.job.items() if k in names}

    def step_sources(self, name: str) -> list[str]:
        """The sources a step reads, relative: `input` or `step/output`."""
        seen: dict[str, None] = {}
        for port in self.steps[name].tool["in"]:
            for source in aslist(port.get("source")):
                seen[_relative(self.id, source)] = None
        return list(seen)

    def output_sources(self) -> list[str]:
        seen: dict[str, None] = {}
        for out in self.tool.tool["outputs"]:
            for source in aslist(out.get("outputSource")):
                seen[_relative(self.id, source)] = None
        return list(seen)

    def _subworkflow(self, sources: list[str], steps: list[dict[str, Any]], outputs: dict[str, dict[str, Any]]) -> Workflow:
        """A workflow whose inputs are `sources` (as src0, src1, ...), with these steps and outputs.

        `outputs` maps output names to their (original) definitions; sources may be in their ids.
        """
        base = self.id.split("#", 1)[0]
        new_id = f"{base}#cwl-airflow-task"
        rename = {f"{self.id}/{s}" if "#" in self.id else f"{base}#{s}": f"{new_id}/src{i}" for i, s in enumerate(sources)}

        def resolve(value: Any) -> Any:
            if isinstance(value, list):
                return [rename.get(v, v) for v in value]
            return rename.get(value, value)

        for step in steps:
            for port in step["in"]:
                if "source" in port:
                    port["source"] = resolve(port["source"])
        for name, out in outputs.items():
            out["id"] = f"{new_id}/{name}"
            out["outputSource"] = resolve(out["outputSource"])
        doc = {k: v for k, v in self.tool.tool.items() if k not in ("id", "inputs", "outputs", "steps")}
        doc.update(
            id=new_id,
            inputs=[{"id": rename[k], "type": self._source_type(s)} for k, s in zip(rename, sources)],
            outputs=list(outputs.values()),
            steps=steps,
        )
        doc.setdefault("cwlVersion", self.tool.metadata.get("cwlVersion", "v1.2"))
        return self._make(doc)

    def _source_type(self, source: str) -> Any:
        """The type of a workflow input or step output; null is added for conditional steps."""
        if "/" not in source:
            port = next(p for p in self.tool.tool["inputs"] if _relative(self.id, p["id"]) == source)
            optional = False
        else:
            name, out = source.rsplit("/", 1)
            step = self.steps[name]
            port = next(p for p in step.tool["outputs"] if _relative(step.id, p["id"]) == out)
            optional = bool(step.tool.get("when"))
        kind = copy.deepcopy(port["type"])
        if optional and not (isinstance(kind, list) and "null" in kind):
            kind = ["null", *kind] if isinstance(kind, list) else ["null", kind]
        return kind

    def step_process(self, name: str) -> tuple[Workflow, list[str]]:
        """The one-step workflow of step `name` and the sources its inputs src0, src1, ... stand for."""
        step = copy.deepcopy(next(s for s in self.tool.tool["steps"] if s["id"] == self.steps[name].id))
        outputs = {}
        for out in step["out"]:
            out_id = out if isinstance(out, str) else out["id"]
            outputs[_relative(step["id"], out_id)] = {"type": ["null", "Any"], "outputSource": out_id}
        sources = self.step_sources(name)
        return self._subworkflow(sources, [step], outputs), sources

    def gather_process(self) -> tuple[Workflow, list[str]]:
        """A workflow without steps whose outputs are this workflow's outputs."""
        outputs = {_relative(self.id, o["id"]): copy.deepcopy(o) for o in self.tool.tool["outputs"]}
        sources = self.output_sources()
        return self._subworkflow(sources, [], outputs), sources

    def execute(self, process: Process, job: dict[str, Any], runtime: RuntimeContext) -> dict[str, Any]:
        runtime.basedir = str(self.path.parent)
        _log_through_logging()
        out, status = SingleJobExecutor()(process, job, runtime)
        if status != "success" or out is None:
            raise WorkflowException(f"cwltool finished with status {status}")
        return {k.rsplit("/", 1)[-1].rsplit("#", 1)[-1]: v for k, v in out.items()}


def _log_through_logging() -> None:
    """cwltool writes its log to stderr; send it through logging (Airflow's task log, with levels)."""
    from cwltool.loghandler import _logger, defaultStreamHandler

    _logger.removeHandler(defaultStreamHandler)
    _logger.propagate = True


def _resources(process: Process) -> tuple[float | None, float | None]:
    """Static coresMin/ramMin of a process; a subworkflow needs what its biggest step needs."""
    if isinstance(process, Workflow):
        needs = [_resources(s.embedded_tool) for s in process.steps]
        cores = [c for c, _ in needs if c is not None]
        ram = [r for _, r in needs if r is not None]
        return (max(cores) if cores else None, max(ram) if ram else None)
    req, _ = process.get_requirement("ResourceRequirement")
    if not req:
        return None, None

    def static(key: str) -> float | None:
        value = req.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    return static("coresMin"), static("ramMin")


def files_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every File and Directory object in a CWL value."""
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            yield value
        for item in value.values():
            yield from files_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from files_in(item)
