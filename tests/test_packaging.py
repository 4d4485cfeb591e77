"""The image builds from what the package declares: every top-level package that pyproject.toml
installs is copied into the image by the Dockerfile (a package left out would install as nothing
and fail at its first import in production, not here)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if any(fnmatch.fnmatch(path.parent.name, pattern) for pattern in patterns)
    }


def copied_directories() -> set[str]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.MULTILINE))


def test_the_image_copies_every_installed_package():
    declared = declared_packages()
    assert declared == {
        "api",
        "checklists",
        "geo",
        "recurrence",
        "sim",
        "storage",
        "validation",
    }
    assert copied_directories() == declared


def test_the_image_carries_the_licence():
    assert re.search(r"^COPY .*\bLICENSE\b.* \./$", (ROOT / "Dockerfile").read_text(), re.M)
