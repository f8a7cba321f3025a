"""The operator's "compute values" action: value the current version on a labelled split
the server holds, as ``tmc registry value`` does, and keep the result in the registry."""

from __future__ import annotations

from pathlib import Path

from tmc.common.data.spec import DatasetName
from tmc.server.registry import Registry
from tmc.server.valuation import Valuation, value_version
from tmc.server.valuation.split import evaluation_split


def value_current(registry: Registry, dataset: DatasetName, root: Path | None) -> Valuation:
    """Every silo's values of the current version on ``dataset``'s test split; kept."""
    split = evaluation_split(registry, dataset, root)
    return value_version(registry, split)


__all__ = ["value_current"]
