"""Data kept beside the repository, in ``../shared/data`` (the real-photo corpus, orienteering
benchmark instances), too large to commit.

Tests reach it only through ``shared_data()``. When it is missing, the test is skipped on a
developer's machine, and the closing summary says how many were and why; in CI (``CI=true``),
where the data is provisioned, the test fails instead, so a green CI run has run them all.
Loaded as a plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MISSING = "shared data missing: "


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def shared_data(relative: str) -> Path:
    """``../shared/data/<relative>``; skips the calling test when absent (fails it in CI)."""
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"{MISSING}../shared/data/{relative}"
        if in_ci():
            pytest.fail(f"{reason} (CI=true: CI must provide it)", pytrace=False)
        pytest.skip(reason)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        # A skip's longrepr is (file, line, "Skipped: <reason>").
        if isinstance(report.longrepr, tuple) and MISSING in report.longrepr[2]:
            reasons[report.longrepr[2].partition(MISSING)[2]] += 1
    if not reasons:
        return
    total = sum(reasons.values())
    terminalreporter.write_sep(
        "=", f"{total} skipped because shared data is missing", yellow=True, bold=True
    )
    for where, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count} skipped: {where} is not present")
    terminalreporter.write_line(
        f"Put the data at {SHARED_DATA} to run them; with CI=true they fail instead of skipping."
    )
