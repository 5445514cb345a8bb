"""What the portable artifacts' tests share: the Debian releases they run on, the example
workflow and its outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITES = ["bullseye", "bookworm", "trixie"]  # Debian 11, 12 and 13
WORKFLOW = REPO / "tests/cwl/features.cwl"  # JavaScript, scatter, a subworkflow
EXPECTED = {"echoed": ["a!", "b!"], "shouted": "A!", "joined": "a! b!"}


def suites(in_ci: str) -> list:
    """SUITES as test parameters: `in_ci` in every run, the others in `make test-full` only."""
    return [pytest.param(suite, marks=() if suite == in_ci else pytest.mark.full) for suite in SUITES]
