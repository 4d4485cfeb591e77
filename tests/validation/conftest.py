from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_data import shared_data
from tests.validation.corpus import CORPUS_MANIFEST


@pytest.fixture
def corpus() -> Path:
    """The real-photo corpus directory (skips, or fails in CI, when it is missing)."""
    return shared_data(CORPUS_MANIFEST).parent
