"""Fixtures of the deployment tests: the deploy script as a module, a silo folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec, export_silo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def credentials_module() -> ModuleType:
    """``deploy/credentials.py`` (a script, not a package) imported by path."""
    spec = importlib.util.spec_from_file_location(
        "deploy_credentials", REPO / "deploy" / "credentials.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic resolve names through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def silo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``silo-0`` of a two-silo digits export, as ``tmc data export`` writes it."""
    partition = FederatedPartition(
        DatasetSpec(name="digits"), PartitionSpec(split="class", num_silos=2, num_increments=2)
    )
    out = tmp_path_factory.mktemp("silo-data") / "silo-0"
    export_silo(partition, 0, out)
    return out
