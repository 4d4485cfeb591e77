"""The real-photo corpus beside the repository (shared data), and its exiftool manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared/data/photos/real"
CORPUS_MISSING = "real-photo corpus (../shared/data/photos/real) is not present"


def corpus_entries() -> list[Any]:
    """One pytest param per manifest entry, named by its file; a single skip when absent."""
    manifest = CORPUS / "manifest.json"
    if not manifest.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_MISSING))]
    files = json.loads(manifest.read_text())["files"]
    return [pytest.param(entry, id=entry["file"]) for entry in files]
