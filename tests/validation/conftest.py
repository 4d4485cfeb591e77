from __future__ import annotations

from pathlib import Path

import pytest

from tests.validation.corpus import CORPUS, CORPUS_MISSING


@pytest.fixture
def corpus() -> Path:
    if not (CORPUS / "manifest.json").is_file():
        pytest.skip(CORPUS_MISSING)
    return CORPUS
