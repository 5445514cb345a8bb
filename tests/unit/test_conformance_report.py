"""The conformance report: cwltest's JUnit parsed, runners compared per tag, badges."""

from __future__ import annotations

import json

from testhosts.conformance import Comparison, RunnerResult, SuiteTest, parse_junit, suite_tests

JUNIT = """<?xml version="1.0" ?><testsuites><testsuite name="cwltest">
<testcase name="doc a" file="a" classname="required" time="3.5"/>
<testcase name="doc b" file="b" classname="required, workflow" time="1.25"><failure message="x"/></testcase>
<testcase name="doc c" file="c" classname="workflow"><skipped message="Unsupported"/></testcase>
</testsuite></testsuites>"""


def test_junit_of_cwltest_gives_passed_failed_unsupported():
    result = parse_junit("cwl-airflow", 12.0, JUNIT)
    assert (result.passed, result.failed, result.unsupported) == ({"a"}, {"b"}, {"c"})
    assert result.times == {"a": 3.5, "b": 1.25, "c": 0.0}


def test_comparison_counts_per_tag_and_names_what_cwltool_alone_passes(tmp_path):
    tests = [SuiteTest(1, "a", ("required",)), SuiteTest(2, "b", ("required", "workflow")),
             SuiteTest(3, "c", ("workflow",)), SuiteTest(4, "d", ("workflow",))]
    reference = RunnerResult("cwltool", 10.0, passed={"a", "b", "c"}, times={"a": 0.5, "b": 2.0, "c": 1.0})
    appliance = parse_junit("cwl-airflow", 25.0, JUNIT)
    comparison = Comparison(tests, reference, appliance)
    assert [t.id for t in comparison.ran()] == ["a", "b", "c"]  # d was not selected
    assert [t.id for t in comparison.reference_only()] == ["b", "c"]
    assert comparison.per_tag() == {"all": (1, 3, 3), "required": (1, 2, 2), "workflow": (0, 2, 2)}
    comparison.write_badges(tmp_path)
    assert json.loads((tmp_path / "required.json").read_text()) == {"subject": "required", "status": "1/2", "color": "red"}
    text = comparison.markdown()
    assert "per test that both pass: cwltool 0.50, cwl-airflow 3.50." in text  # only a passes both
    assert "cwltool 10 s, cwl-airflow 25 s (2.50x)" in text and "- #2 `b`" in text and "| workflow | 0 | 2 | 2 |" in text


def test_suite_tests_follow_imports_in_order(tmp_path):
    (tmp_path / "conformance_tests.yaml").write_text("- {id: one, tags: [required]}\n- $import: more.yaml\n- {id: four}\n")
    (tmp_path / "more.yaml").write_text("- {id: two, tags: [workflow]}\n- {label: three}\n")
    assert suite_tests(tmp_path) == [SuiteTest(1, "one", ("required",)), SuiteTest(2, "two", ("workflow",)),
                                     SuiteTest(3, "three", ("required",)), SuiteTest(4, "four", ("required",))]
