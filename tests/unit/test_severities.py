"""The one order of severities (scan/model.py) and the places that must spell the same set."""

from __future__ import annotations

from typing import get_args

import pytest

from dockyard.scan.model import RATED, SEVERITIES, at_least, severities_at_least, severity_rank, worst


def test_the_order_is_most_severe_first_and_foreign_labels_rank_last() -> None:
    assert sorted(["LOW", "UNKNOWN", "CRITICAL", "MEDIUM", "HIGH"], key=severity_rank) == list(SEVERITIES)
    assert severity_rank("NEGLIGIBLE") > severity_rank("UNKNOWN")
    assert RATED == ("CRITICAL", "HIGH", "MEDIUM", "LOW")


@pytest.mark.parametrize(
    ("severity", "threshold", "expected"),
    [("CRITICAL", "high", True), ("HIGH", "HIGH", True), ("MEDIUM", "high", False), ("UNKNOWN", "low", False),
     ("UNKNOWN", "unknown", True), ("LOW", "unknown", True)],
)  # fmt: skip
def test_at_least(severity: str, threshold: str, expected: bool) -> None:
    assert at_least(severity, threshold) is expected


def test_severities_at_least_and_worst() -> None:
    assert severities_at_least("medium") == ("CRITICAL", "HIGH", "MEDIUM")
    assert severities_at_least("UNKNOWN") == SEVERITIES
    assert worst("LOW", "HIGH", "UNKNOWN") == "HIGH"
    assert worst() == "UNKNOWN"


def test_the_api_and_the_cli_offer_exactly_these_severities() -> None:
    from dockyard.api.management.scanning import Severity
    from dockyard.commands.scan import Severity as CliSeverity

    lower = tuple(s.lower() for s in SEVERITIES)
    assert get_args(Severity) == lower
    assert tuple(s.value for s in CliSeverity) == lower
