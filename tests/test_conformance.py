"""The CWL v1.2 conformance suite's required tests, through cwl-airflow and through plain cwltool
on the provisioned host: every test that cwltool passes there passes through the appliance.

The suite is not part of this repository: CWL_SUITE names its folder (`make test` passes
../shared/cwl-v1.2). `make conformance` runs the whole suite and records the figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import LOGS, put_file
from testhosts import conformance

SUITE = Path(os.environ.get("CWL_SUITE", Path(__file__).resolve().parents[1] / "../shared/cwl-v1.2")).resolve()
RESULTS = Path(__file__).resolve().parents[1] / "build" / "conformance"


@pytest.mark.skipif(not (SUITE / "conformance_tests.yaml").exists(), reason=f"no CWL suite at {SUITE} (set CWL_SUITE)")
def test_required_tests_that_cwltool_passes_pass_through_the_appliance(testbed, host, settings, cwl_keys):
    put_file(host, "/root/trigger.pem", cwl_keys.trigger_private.encode(), mode="0600")
    aio = testbed.host("aio")
    try:
        conformance.prepare(aio, settings, SUITE)
        reference = conformance.run_suite(aio, "cwltool", "required")
        appliance = conformance.run_suite(aio, "cwl-airflow", "required",
                                          env={"CWL_AIRFLOW_SIGNING_KEY": "/root/trigger.pem"})
    finally:  # the other tests see the images the play loaded, and only those
        conformance.keep_logs(aio, LOGS, "required")
        conformance.remove_stand_ins(aio)
        # this host sends reports; no receiver listens for the suite's ~500: dropped, so that
        # they do not queue before the reports that later tests wait for
        host.run_expect([0], "systemctl stop cwl-airflow-reporter && find /var/lib/cwl-airflow/reports "
                             "-maxdepth 1 -name '*.json' -delete && systemctl start cwl-airflow-reporter")
    comparison = conformance.Comparison(conformance.suite_tests(SUITE), reference, appliance)
    comparison.write_badges(RESULTS)
    (RESULTS / "required.md").write_text(comparison.markdown())
    assert len(comparison.ran()) >= 84, comparison.markdown()
    assert len(reference.passed) >= 83, f"plain cwltool itself fails here:\n{comparison.markdown()}"
    assert not comparison.reference_only(), comparison.markdown()
