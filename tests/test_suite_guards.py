"""The suite's own guarantees: missing shared data skips on a developer's machine, with a
summary saying so, and fails in CI; every test reaches that data through one helper."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NEEDS_DATA = """
from tests.shared_data import shared_data


def test_needs_data():
    assert shared_data("no-such-dataset").is_dir()


def test_needs_nothing():
    pass
"""


PYTEST = [sys.executable, "-m", "pytest", "-p", "tests.shared_data", "-p", "no:cacheprovider"]


def run_pytest(tmp_path: Path, *, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_data.py").write_text(NEEDS_DATA)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [*PYTEST, "-q", "-rN", "test_needs_data.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_missing_shared_data_fails_the_run(tmp_path: Path, ci: str):
    run = run_pytest(tmp_path, ci=ci)
    assert run.returncode == 1, run.stdout
    assert "1 failed, 1 passed" in run.stdout
    assert (
        "shared data missing: ../shared/data/no-such-dataset (CI=true: CI must provide it)"
        in run.stdout
    )
    assert "skipped" not in run.stdout


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_elsewhere_missing_shared_data_skips_and_the_summary_says_why(
    tmp_path: Path, ci: str | None
):
    run = run_pytest(tmp_path, ci=ci)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 1 skipped" in run.stdout
    summary = run.stdout[run.stdout.index("1 skipped because shared data is missing") :]
    lines = summary.splitlines()[1:3]
    assert lines[0] == "1 skipped: ../shared/data/no-such-dataset is not present"
    assert lines[1].startswith("Put the data at ")
    assert lines[1].endswith("; with CI=true they fail instead of skipping.")


def test_every_test_reaches_shared_data_through_the_helper():
    # A path of its own, or a skipif of its own, would skip silently in CI again.
    spelled = re.compile(r"""shared["']?\s*[/,]\s*["']?data""")
    elsewhere = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.name not in ("shared_data.py", Path(__file__).name)
        and spelled.search(path.read_text())
    ]
    assert elsewhere == []
