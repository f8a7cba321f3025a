"""Registry fixtures: every ``registry`` test runs against both metadata stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.registry.registry_helpers import make_base
from tmc.server.registry import BaseRecord, Registry
from tmc.server.registry.entities import StoreKind


@pytest.fixture
def base() -> BaseRecord:
    return make_base()


@pytest.fixture(params=["sqlite", "memory"])
def store_kind(request: pytest.FixtureRequest) -> StoreKind:
    return request.param


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def registry(root: Path, base: BaseRecord, store_kind: StoreKind) -> Iterator[Registry]:
    with Registry.create(root, base=base, store=store_kind) as reg:
        yield reg


@pytest.fixture
def sqlite_registry(root: Path, base: BaseRecord) -> Iterator[Registry]:
    with Registry.create(root, base=base, store="sqlite") as reg:
        yield reg
