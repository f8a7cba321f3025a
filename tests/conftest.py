"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.models import BaseModelSpec, MaterializedBase, materialize
from common.models.materialize import CACHE_ENV


@pytest.fixture(scope="session")
def tmc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of pre-trained bases for the session (the digits base trains once)."""
    return tmp_path_factory.mktemp("tmc-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(tmc_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in a test may read or write the user's real ~/.cache/tmc.
    monkeypatch.setenv(CACHE_ENV, str(tmc_cache))


@pytest.fixture(scope="session")
def digits_base(tmc_cache: Path) -> MaterializedBase:
    """The built-in default base: small-cnn pre-trained on the public split of digits."""
    return materialize(BaseModelSpec.builtin_digits(), cache_dir=tmc_cache)
