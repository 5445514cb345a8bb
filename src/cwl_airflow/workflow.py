"""A CWL process as the DAG sees it, and the part of a run that each task does with cwltool.

The DAG is dispatcher -> one task per workflow step (wired by the steps' sources) -> gatherer;
a top-level CommandLineTool or ExpressionTool is a DAG with one step. Every task runs
cwltool's own machinery on the original document, so nothing is re-declared or re-typed:

- the dispatcher initialises the job as `cwltool job.json` would (paths, formats, defaults,
  secondary files found beside their primary, listings) and validates it;
- a step task runs cwltool's WorkflowJob with the values known so far (the job and the
  outputs of finished steps) and lets it make the job of its one step only (valueFrom,
  linkMerge, pickValue, scatter, when, subworkflows all as cwltool does them);
- the gatherer lets WorkflowJob collect the workflow's outputs and cwltool move their files
  into the run's output folder.

Values travel between tasks as JSON text (`encode`/`decode`): no size limit on integers,
floats as written. The job's `cwl:requirements` apply to the whole document, as in cwltool:
each task loads the document with them.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import UnsupportedRequirement, WorkflowException
from cwltool.executors import SingleJobExecutor
from cwltool.load_tool import fetch_document, make_tool, resolve_and_validate_document
from cwltool.process import Process, add_sizes, shortname
from cwltool.stdfsaccess import StdFsAccess
from cwltool.update import ORIGINAL_CWLVERSION
from cwltool.utils import adjustDirObjs, aslist, get_listing, normalizeFilesDirs, trim_listing, visit_class
from cwltool.workflow import Workflow, WorkflowStep, default_make_tool
from cwltool.workflow_job import WorkflowJob, WorkflowStateItem
from ruamel.yaml import YAML
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarfloat import ScalarFloat
from schema_salad.exceptions import ValidationException
from schema_salad.fetcher import DefaultFetcher
from schema_salad.ref_resolver import Loader, file_uri

from cwl_airflow.staging import file_under

log = logging.getLogger(__name__)
CWL_REQUIREMENTS = ("cwl:requirements", "https://w3id.org/cwl/cwl#requirements")
FLOAT_TAG = "cwl-airflow:float"


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


def encode(value: Any) -> str:
    """A CWL value as the JSON text that tasks exchange; a float read from YAML keeps its
    literal (cwltool writes 0.00001 on a command line as 0.00001, not 1e-05)."""
    return json.dumps(_tag_floats(value), default=_plain)


def decode(text: Any) -> Any:
    return json.loads(text, object_hook=_untag_float) if isinstance(text, str) else text


def _tag_floats(value: Any) -> Any:
    if isinstance(value, ScalarFloat):
        return {FLOAT_TAG: RoundTripRepresenter().represent_scalar_float(value).value}
    if isinstance(value, dict):
        return {k: _tag_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_floats(v) for v in value]
    return value


def _untag_float(item: dict[str, Any]) -> Any:
    if len(item) == 1 and isinstance(item.get(FLOAT_TAG), str):
        return YAML(typ="rt").load(item[FLOAT_TAG])
    return item


def _plain(value: Any) -> Any:
    if isinstance(value, set):
        return list(value)
    raise TypeError(f"not a CWL value: {type(value).__name__}")


def _relative(parent_id: str, uri: str) -> str:
    """`file:///w.cwl#step/out` -> `step/out`, also inside packed documents (`#main/step/out`)."""
    frag = uri.split("#", 1)[1] if "#" in uri else uri
    parent = parent_id.split("#", 1)[1] if "#" in parent_id else ""
    return frag[len(parent) + 1 :] if parent and frag.startswith(parent + "/") else frag


def job_requirements(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The requirements a job gives the whole document (`cwl:requirements`, CWL v1.1 and later)."""
    return [req for key in CWL_REQUIREMENTS for req in job.get(key) or []]


def _confined_fetcher(document: str, folders: tuple[Path, ...]) -> type[DefaultFetcher]:
    """A fetcher that reads the document, files under `folders` and cwltool's cached schemas only.

    No other file and no http(s): an uploaded document must not make the server read its files
    or reach its network. What is refused looks missing, so that a refusal tells nothing about
    the server's files."""
    def allowed(url: str) -> bool:
        plain = urllib.parse.urldefrag(url)[0]
        return plain == document or file_under(plain, folders)

    class ConfinedFetcher(DefaultFetcher):
        def fetch_text(self, url: str, content_types: list[str] | None = None) -> str:
            if url not in self.cache and not allowed(url):
                raise ValidationException(f"refused to read {url}: an uploaded document must be self-contained "
                                          "(pack it: `cwltool --pack`; `cwl-airflow run` does)")
            return super().fetch_text(url, content_types)

        def check_exists(self, url: str) -> bool:
            return (url in self.cache or allowed(url)) and super().check_exists(url)

    return ConfinedFetcher


class CWLWorkflow:
    """A loaded CWL document: its steps for the DAG, and what each task does."""

    def __init__(self, path: str | Path, requirements: list[dict[str, Any]] | None = None,
                 confined_to: tuple[Path, ...] | None = None, formats: bool = True) -> None:
        """`confined_to`: read nothing but the document and files under these folders (an upload).
        `formats=False`: without the ontologies of `$schemas` (EDAM takes seconds to parse), for
        what needs only the document's structure (a DAG); formats cannot be checked then."""
        self.path = Path(str(path).split("#", 1)[0]).resolve()
        uri = file_uri(str(self.path)) + ("#" + str(path).split("#", 1)[1] if "#" in str(path) else "")
        try:
            context = LoadingContext({"construct_tool_object": default_make_tool, "do_update": True,
                                      "skip_schemas": not formats})
            if confined_to is not None:
                context.fetcher_constructor = _confined_fetcher(file_uri(str(self.path)), confined_to)
            context, document, uri = fetch_document(uri, context)
            self.loading_context, uri = resolve_and_validate_document(context, document, uri)
            if requirements:
                if self.loading_context.metadata.get(ORIGINAL_CWLVERSION) == "v1.0":
                    raise CWLError("`cwl:requirements` in the job is not part of CWL v1.0")
                # a packed document's process is its #main (cwltool's choice when none is named)
                target = uri + "#main" if "#" not in uri and "$graph" in document else uri
                self.loading_context.overrides_list.append({"overrideTarget": target, "requirements": requirements})
            self.process: Process = make_tool(uri, self.loading_context)
        except UnsupportedRequirement as err:
            raise CWLError(str(err), unsupported=True) from None
        except (ValidationException, WorkflowException, OSError) as err:
            raise CWLError(str(err)) from None
        _refuse_image_builds(self.process)
        self.id: str = self.process.tool["id"]
        self.is_workflow = isinstance(self.process, Workflow)
        if self.is_workflow:
            self.steps: dict[str, WorkflowStep | None] = {_relative(self.id, s.id): s for s in self.process.steps}
        else:  # the tool is the DAG's one step, named after its file (or its id in a packed document)
            name = _relative(self.id, self.id) if "#" in self.id else self.path.stem
            self.steps = {name or "tool": None}

    # -- the DAG's view ------------------------------------------------------------------------

    def dag_steps(self) -> list[Step]:
        if not self.is_workflow:
            return [Step(name, set(), *_resources(self.process)) for name in self.steps]
        result = []
        for name, step in self.steps.items():
            upstream = set()
            for port in step.tool["in"]:
                for source in aslist(port.get("source") or []):
                    rel = _relative(self.id, source)
                    if "/" in rel:
                        upstream.add(rel.rsplit("/", 1)[0])
            result.append(Step(name, upstream, *_resources(step.embedded_tool)))
        return result

    def requires_container(self) -> bool:
        """Whether a tool requires (not only hints) a DockerRequirement: without a container
        engine cwltool runs hinted tools on the host and fails required ones."""
        return any(tool.get_requirement("DockerRequirement")[1] for tool in _tools(self.process))

    def input_names(self) -> list[str]:
        return [shortname(i["id"]) for i in self.process.tool["inputs"]]

    # -- the tasks' view -----------------------------------------------------------------------

    def prepare_job(self, job: dict[str, Any], basedir: str | Path, listings: bool = True) -> dict[str, Any]:
        """The job as cwltool would run it: relative paths from basedir, formats expanded,
        defaults filled in, secondary files found, a workflow's listings loaded (unless
        `listings` is false: cwltool loads them once); CWLError says what is wrong.
        The job's `cwl:requirements` are kept as they came."""
        kept = {CWL_REQUIREMENTS[0]: job_requirements(job)} if job_requirements(job) else {}
        namespaces = {**(job.get("$namespaces") or {}), **self.process.metadata.get("$namespaces", {})}
        inputs = {k: v for k, v in copy.deepcopy(_job_only(job)).items() if not k.startswith("$")}
        base = os.path.abspath(basedir)
        expand = Loader(namespaces).expand_url

        def locate(item: dict[str, Any]) -> None:
            location = item.get("location")
            if location is not None and ":" not in location.split("/", 1)[0]:
                # a relative URI, joined as one (A%3AB names the file A:B)
                item["location"] = urllib.parse.urljoin(file_uri(base) + "/", location)
            elif location is None and "path" in item:  # a path, or the URI cwltool's job loader makes of one
                path = item.pop("path")
                item["location"] = path if path.startswith("file://") else file_uri(os.path.join(base, path))
            if "format" in item:
                item["format"] = expand(item["format"], "")

        try:
            visit_class(inputs, ("File", "Directory"), locate)
            visit_class(inputs, ("File",), functools.partial(add_sizes, StdFsAccess(base)))
            adjustDirObjs(inputs, trim_listing)
            normalizeFilesDirs(inputs)
            listed = _listed_directories(inputs)
            runtime = RuntimeContext({"basedir": base, "toplevel": True})
            prepared = dict(self.process._init_job(inputs, runtime).job)
        except (ValidationException, WorkflowException, OSError) as err:
            raise CWLError(f"invalid job: {err}") from None
        if not (self.is_workflow and listings):  # a tool's step lists them itself
            visit_class(prepared, ("Directory",), lambda d: d.get("location") in listed or d.pop("listing", None))
        names = set(self.input_names())
        return {**decode(encode({k: v for k, v in prepared.items() if k in names})), **kept}

    def run_step(self, name: str, inputs: dict[str, Any], finished: dict[str, Any],
                 runtime: RuntimeContext) -> dict[str, Any]:
        """Run step `name` given the workflow's inputs and the results of finished steps
        ({step: {"status": ..., "outputs": {...}}}); its result in the same form."""
        if not self.is_workflow:
            outputs = self._execute(self.process, _job_only(inputs), runtime)
            return {"status": "success", "outputs": outputs}
        part = _WorkflowPart(self.process, self._state(finished), self.steps[name].id)
        if _updates_in_place(self.steps[name]):  # its outputs are its inputs, changed: left where they
            runtime = runtime.copy()  # are (the run's tmp folder goes when the run ends)
            runtime.move_outputs, runtime.rm_tmpdir = "leave", False
        outputs = self._execute(part, _job_only(inputs), runtime)
        return {"status": part.step_status, "outputs": outputs}

    def gather(self, inputs: dict[str, Any], finished: dict[str, Any], runtime: RuntimeContext) -> dict[str, Any]:
        """The workflow's output object, its files moved into runtime.outdir."""
        if not self.is_workflow:
            (result,) = finished.values()
            return self._execute(_Outputs(self.process, result["outputs"]), {}, runtime)
        return self._execute(_WorkflowPart(self.process, self._state(finished), None), _job_only(inputs), runtime)

    def _state(self, finished: dict[str, Any]) -> dict[str, WorkflowStateItem]:
        """cwltool's workflow state: the values of finished steps' outputs, by full id."""
        state = {}
        for name, result in finished.items():
            step = self.steps[name]
            for port in step.tool["outputs"]:
                short = shortname(port["id"])
                if short in result["outputs"]:
                    state[port["id"]] = WorkflowStateItem(port, result["outputs"][short], result["status"])
        if self._has_in_place_step:
            for item in state.values():
                _list_again(item.value)
        return state

    @functools.cached_property
    def _has_in_place_step(self) -> bool:
        return any(_updates_in_place(step) for step in self.steps.values() if step is not None)

    def _execute(self, process: Any, job: dict[str, Any], runtime: RuntimeContext) -> dict[str, Any]:
        runtime = runtime.copy()
        runtime.basedir = runtime.basedir or str(self.path.parent)
        _log_through_logging()
        out, status = SingleJobExecutor()(process, job, runtime)
        if status not in ("success", "skipped") or out is None:
            raise WorkflowException(f"cwltool finished with status {status}")
        return {shortname(k): v for k, v in out.items()}


def _updates_in_place(step: WorkflowStep) -> bool:
    """Whether the step may change its inputs in place (InplaceUpdateRequirement)."""
    return bool((step.embedded_tool.get_requirement("InplaceUpdateRequirement")[0] or {}).get("inplaceUpdate"))


def _list_again(value: Any) -> None:
    """Listings recorded when an earlier step ended, read again from their directories (once
    each, to the recorded depth): a later step may have changed them in place (in cwltool's own
    process both steps see one object)."""
    if isinstance(value, list):
        for item in value:
            _list_again(item)
    elif isinstance(value, dict):
        if value.get("class") == "Directory" and "listing" in value and value.get("location", "").startswith("file://"):
            deep = any("listing" in entry for entry in value["listing"] if entry.get("class") == "Directory")
            del value["listing"]
            get_listing(StdFsAccess(""), value, recursive=deep)
            return
        for item in value.values():
            _list_again(item)


def _listed_directories(value: Any) -> set[str]:
    """Locations of the Directory objects that come with a listing."""
    found: set[str] = set()
    visit_class(value, ("Directory",), lambda d: "listing" in d and found.add(d.get("location")))
    return found


def _job_only(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if k not in CWL_REQUIREMENTS}


class _WorkflowPart(WorkflowJob):
    """cwltool's WorkflowJob restricted to one step (`step_id`), or to collecting the outputs (None).

    The values of finished steps are put into cwltool's state before it looks for a step to
    run; every other step counts as submitted, so WorkflowJob makes the job of this one only.
    """

    def __init__(self, workflow: Workflow, known: dict[str, WorkflowStateItem], step_id: str | None) -> None:
        # WorkflowJob's own __init__ needs the runtime, which the executor gives to job(); before
        # that, the executor reads only what a process has: visit(), metadata, requirements
        self.workflow, self.known, self.step_id = workflow, known, step_id
        self.step_status = "success"
        self.tool, self.metadata, self.requirements = workflow.tool, workflow.metadata, workflow.requirements

    def visit(self, op: Any) -> None:
        self.workflow.visit(op)

    def job(self, joborder: dict[str, Any], output_callback: Any, runtime: RuntimeContext) -> Iterator[Any]:
        super().__init__(self.workflow, runtime)
        for step in self.steps:
            step.submitted = step.completed = step.id != self.step_id
        runtime = runtime.copy()
        runtime.toplevel = False
        yield from super().job(joborder, output_callback, runtime)

    def _know(self) -> None:
        self.state.update({k: v for k, v in self.known.items() if self.state.get(k) is None})

    def try_make_job(self, step: Any, final_output_callback: Any, runtime: RuntimeContext) -> Any:
        self._know()
        return super().try_make_job(step, final_output_callback, runtime)

    def do_output_callback(self, final_output_callback: Any) -> None:
        self._know()
        if self.step_id is None:
            return super().do_output_callback(final_output_callback)
        (step,) = (s for s in self.steps if s.id == self.step_id)
        ports = [p["id"] for p in step.tool["outputs"]]
        items = [self.state.get(p) for p in ports]
        if any(i is not None and i.success == "skipped" for i in items):
            self.step_status = "skipped"
        self.did_callback = True
        final_output_callback({p: i.value if i else None for p, i in zip(ports, items)}, self.processStatus)


class _Outputs:
    """A process whose output is given: lets cwltool's executor move a tool's outputs into place."""

    def __init__(self, tool: Process, outputs: dict[str, Any]) -> None:
        self.outputs, self.metadata, self.requirements = outputs, tool.metadata, tool.requirements

    def visit(self, op: Any) -> None:
        pass

    def job(self, joborder: dict[str, Any], output_callback: Any, runtime: RuntimeContext) -> Iterator[Any]:
        output_callback(copy.deepcopy(self.outputs), "success")
        yield from ()


def _log_through_logging() -> None:
    """cwltool writes its log to stderr; send it through logging (Airflow's task log, with levels)."""
    from cwltool.loghandler import _logger, defaultStreamHandler

    _logger.removeHandler(defaultStreamHandler)
    _logger.propagate = True


def _tools(process: Process) -> Iterator[Process]:
    """The tools a process runs: itself, or its steps' tools down every subworkflow."""
    if isinstance(process, Workflow):
        for step in process.steps:
            yield from _tools(step.embedded_tool)
    else:
        yield process


def _refuse_image_builds(process: Process) -> None:
    """A step's image build (DockerRequirement.dockerFile, as requirement or hint) would run as
    root in the container engine: the step user's Docker proxy refuses it. Said at upload,
    rather than by a failing step."""
    for tool in _tools(process):
        docker, _ = tool.get_requirement("DockerRequirement")
        if docker and "dockerFile" in docker:
            raise CWLError(f"{tool.tool['id']}: DockerRequirement.dockerFile is not supported here (an image build "
                           "runs as root in the container engine); build the image elsewhere and name it with "
                           "dockerPull, dockerLoad or dockerImport", unsupported=True)


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
