"""Runs a CWL document's DAG tasks in this process, in DAG order, with the values passing as
JSON text as through XCom: the product's task code without Airflow's daemons.

As a cwltest tool (`cwltest --tool tests/cwl_unit/dag_order.py`) it runs any CWL suite
through the per-task decomposition in seconds; the appliance's own run is `make conformance`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cwltool.context import RuntimeContext

from cwl_airflow.cli import load_job
from cwl_airflow.steps import strip_cwltool_keys
from cwl_airflow.workflow import CWLError, CWLWorkflow, decode, encode, job_requirements


def run_like_the_dag(path: str | Path, job: dict[str, Any], job_dir: Path, tmp: Path, outdir: Path,
                     use_container: bool = False) -> dict[str, Any]:
    def runtime(out: Path) -> RuntimeContext:
        return RuntimeContext({"outdir": str(out), "use_container": use_container, "move_outputs": "move",
                               "tmpdir_prefix": str(tmp / "tmp") + "/", "tmp_outdir_prefix": str(tmp / "out") + "/"})

    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    (tmp / "out").mkdir(parents=True, exist_ok=True)
    wf = CWLWorkflow(path, job_requirements(job))  # as the tasks load it (operators.load_workflow)
    prepared = decode(encode(wf.prepare_job(job, job_dir)))
    results: dict[str, Any] = {}
    steps = wf.dag_steps()
    while len(results) < len(steps):
        for step in steps:
            if step.name not in results and step.upstream <= set(results):
                finished = {name: results[name] for name in step.upstream}
                results[step.name] = decode(encode(wf.run_step(step.name, prepared, finished, runtime(tmp / step.name))))
    return strip_cwltool_keys(decode(encode(wf.gather(prepared, results, runtime(outdir)))))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--no-container", dest="container", action="store_false")
    parser.add_argument("workflow")
    parser.add_argument("job", nargs="?")
    args, _ = parser.parse_known_args()
    job_path = Path(args.job).resolve() if args.job else None
    job = load_job(job_path) if job_path else {}
    try:
        with tempfile.TemporaryDirectory(prefix="dag-order-") as tmp:
            out = run_like_the_dag(args.workflow, job, job_path.parent if job_path else Path.cwd(), Path(tmp),
                                   Path(args.outdir).resolve(), args.container)
    except CWLError as err:
        print(err.reason, file=sys.stderr)
        return 33 if err.unsupported else 1
    except Exception as err:  # cwltool's failures: the test fails, with the reason
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    with os.fdopen(RESULT_FD, "w") as result:
        print(json.dumps(out, indent=2), file=result)
    return 0


if __name__ == "__main__":
    # the output object alone on stdout: every log (Airflow's logging writes to stdout) to stderr
    RESULT_FD = os.dup(1)
    os.dup2(2, 1)
    sys.exit(main())
