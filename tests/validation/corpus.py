"""The real-photo corpus beside the repository (shared data), and its exiftool manifest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.shared_data import SHARED_DATA

CORPUS_MANIFEST = "photos/real/manifest.json"
CORPUS = (SHARED_DATA / CORPUS_MANIFEST).parent


def corpus_entries() -> list[Any]:
    """One pytest param per manifest entry, named by its file. Without the manifest, a single
    case, which asks for the corpus (the ``corpus`` fixture) and so skips, or fails in CI."""
    manifest = CORPUS / "manifest.json"
    if not manifest.is_file():
        return [pytest.param(None, id="corpus-missing")]
    files = json.loads(manifest.read_text())["files"]
    return [pytest.param(entry, id=entry["file"]) for entry in files]
