"""The labelled split a valuation runs on: a dataset's test split in the federation's labels."""

from __future__ import annotations

from pathlib import Path

from tmc.common.data import DatasetSpec, load_dataset
from tmc.common.data.spec import DatasetName
from tmc.server.composed import FederationLabels
from tmc.server.registry import Registry
from tmc.server.registry.model_file import require_data
from tmc.server.valuation.logits import SplitTensors


def evaluation_split(
    registry: Registry, dataset: DatasetName, root: Path | None = None
) -> SplitTensors:
    """The test split of ``dataset``, its classes mapped onto the federation's by name and
    its images prepared by the federation's input spec (as ``tmc evaluate`` reads it)."""
    data = require_data(registry.settings.data, registry.root)
    source = load_dataset(DatasetSpec(name=dataset, root=root), train=False)
    labelled = FederationLabels(source, data, where=f"the {dataset} test split")
    return SplitTensors.from_dataset(labelled)


__all__ = ["evaluation_split"]
