#!/usr/bin/env python3
"""make conformance: the CWL v1.2 suite through cwl-airflow and plain cwltool on one test host.

Boots a test host, provisions it with ansible/site.yml, makes the stand-in images, runs the
suite (or the tests of --tags) through both runners, and writes per-tag counts, the tests
that pass under cwltool only and both wall times into docs/benchmarks.md (section
"CWL conformance"), with badge JSON per tag under build/conformance/.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
from pathlib import Path

from testhosts import Settings, Testbed, conformance
from testhosts.playbook import run_playbook

REPO = Path(__file__).resolve().parents[1]
SECTION = "## CWL conformance"


def replace_section(doc: Path, body: str) -> None:
    """Put body under SECTION in doc, in place of what was there (the section is added when missing)."""
    text = doc.read_text() if doc.exists() else ""
    section = f"{SECTION}\n\n{body}"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    doc.write_text(text.rstrip() + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, required=True, help="the CWL v1.2 suite (conformance_tests.yaml and tests/)")
    parser.add_argument("--tags", help="only these tags (cwltest --tags), e.g. required")
    parser.add_argument("--keep", action="store_true", help="leave the test host running")
    parser.add_argument("doc", type=Path, help="where the figures go (docs/benchmarks.md)")
    args = parser.parse_args()
    if not (args.suite / "conformance_tests.yaml").exists():
        parser.error(f"--suite {args.suite}: no conformance_tests.yaml there (CWL_SUITE=path of the CWL v1.2 suite)")
    settings = Settings.from_env()
    testbed = Testbed("conformance", settings)
    testbed.down()
    host = None
    try:
        testbed.up(["cwl-suite"], groups={"appliance": ["cwl-suite"]})
        play = run_playbook(testbed.inventory, log=REPO / "build/test-logs/conformance-site.log")
        if play.returncode:
            print(play.output[-4000:], file=sys.stderr)
            return play.returncode
        host = testbed.host("cwl-suite")
        conformance.prepare(host, settings, args.suite.resolve())
        print("running the suite through plain cwltool", flush=True)
        reference = conformance.run_suite(host, "cwltool", args.tags)
        print(f"  {len(reference.passed)} passed in {reference.seconds:.0f} s; now through cwl-airflow", flush=True)
        appliance = conformance.run_suite(host, "cwl-airflow", args.tags)
        print(f"  {len(appliance.passed)} passed in {appliance.seconds:.0f} s", flush=True)
    finally:
        if host is not None:
            conformance.keep_logs(host, REPO / "build/test-logs", args.tags or "all")
        if not args.keep:
            testbed.down()
    comparison = conformance.Comparison(conformance.suite_tests(args.suite), reference, appliance)
    comparison.write_badges(REPO / "build/conformance")
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    when = datetime.date.today().isoformat()
    scope = f"tests tagged `{args.tags}`" if args.tags else "the whole suite"
    body = (f"`make conformance` ({scope}, `cwltest -j2 --timeout 300`), {when}, on {machine}; one test host "
            "provisioned by ansible/site.yml, the same stand-in images for both runners.\n\n" + comparison.markdown())
    replace_section(args.doc, body)
    print(comparison.markdown())
    return 0 if not comparison.reference_only() else 1


if __name__ == "__main__":
    sys.exit(main())
