"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.models.materialize import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def tmc_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of pre-trained bases for the whole session (the digits base trains once).

    Session-scoped and automatic, so that it is in place before any module-scoped fixture
    runs: no test may read or write the user's real ``~/.cache/tmc``.
    """
    path = tmp_path_factory.mktemp("tmc-cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    yield path
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session")
def digits_base(tmc_cache: Path) -> MaterializedBase:
    """The built-in default base: small-cnn pre-trained on the public split of digits."""
    return materialize(BaseModelSpec.builtin_digits(), cache_dir=tmc_cache)
