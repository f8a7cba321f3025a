"""Using the composed model: θ0 and the data spec from the registry, Δ from a version.

θ0 is rebuilt from the tensors the registry stores (checked against its base hash), never
from a cache or a weights file, so a registry keeps answering after ``~/.cache/tmc`` is
deleted or a weights file moves. Inputs are prepared by the registry's input spec, and
labels are the federation's: a test set's classes are mapped onto them by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tmc.common.data import LabeledDataset
from tmc.common.data.inputs import DataSpec, InputSpec, prepare_image, read_image
from tmc.common.errors import ConfigError, DataError, NotFoundError
from tmc.common.models import BaseModelSpec, MaterializedBase, from_theta0
from tmc.common.tangent import TangentModel
from tmc.server.registry import ModelVersion, Registry
from tmc.server.registry.model_file import require_data


@dataclass
class ComposedModel:
    """θ0 + Δ of one registry version (the linearised model), with its label space."""

    base: MaterializedBase
    model: TangentModel
    version: ModelVersion
    data: DataSpec

    @classmethod
    def from_registry(cls, registry: Registry, version: int | None = None) -> ComposedModel:
        data = require_data(registry.settings.data, registry.root)
        chosen = registry.version(version)
        if chosen.purged:
            raise NotFoundError(
                f"version {chosen.number} cannot be loaded: it contained components that were "
                "forgotten since, so its Δ was deleted (use the current version, or a later one)"
            )
        spec = BaseModelSpec.model_validate_json(registry.base.spec_json)
        base = from_theta0(spec, registry.theta0(), expected_sha256=registry.base.sha256)
        model = TangentModel(base.network, base.tangent_names)
        model.load_delta(dict(registry.composed_delta(chosen.number)))
        return cls(base=base, model=model.eval(), version=chosen, data=data)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def load_inputs(path: Path, spec: InputSpec) -> torch.Tensor:
    """A batch (N, C, H, W) from a ``.npy`` array (already preprocessed, (C, H, W) or
    (N, C, H, W) of the spec's shape) or an image file, prepared by ``prepare_image``."""
    if not path.is_file():
        raise DataError(f"input {path} does not exist (or is not a file)")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"cannot read {path} as a .npy array: {exc}") from exc
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(
            array.dtype, np.complexfloating
        ):
            raise DataError(f"{path} holds {array.dtype} values, not real numbers")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        batch = tensor.unsqueeze(0) if tensor.dim() == 3 else tensor
    else:
        batch = prepare_image(read_image(path), spec).unsqueeze(0)
    if batch.dim() != 4 or tuple(batch.shape[1:]) != spec.shape:
        raise DataError(
            f"{path} has shape {tuple(batch.shape)}; the model takes {spec.shape} or "
            f"(N, {', '.join(map(str, spec.shape))}) ({spec.describe()})"
        )
    return batch


class FederationLabels(Dataset[tuple[torch.Tensor, int]]):
    """A labelled dataset read in the federation's label space: label ``c`` of the source
    becomes ``mapping[c]``, the federation's index of the same class name."""

    def __init__(self, dataset: LabeledDataset, data: DataSpec, *, where: str) -> None:
        present = sorted({int(c) for c in dataset.targets})
        # Only the classes present must be known: a test split may lack some of its classes.
        data.label_map([dataset.classes[c] for c in present], where=where)
        index = {name: i for i, name in enumerate(data.classes)}
        self.mapping = [index.get(name, -1) for name in dataset.classes]
        self.dataset = dataset
        if tuple(dataset.image_shape) != data.input.shape:
            raise DataError(
                f"{where} images are {tuple(dataset.image_shape)}, the federation's input is "
                f"{data.input.shape} ({data.input.describe()})"
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return image, self.mapping[label]


def version_tasks(registry: Registry, version: ModelVersion) -> dict[str, tuple[int, ...]]:
    """The tasks of task-incremental evaluation: one per silo whose components ``version``
    composes, its classes (the union over those components). The sets must be disjoint,
    as they are in a class split; overlapping silos are a ConfigError naming them."""
    included = set(version.component_ids)
    classes: dict[str, set[int]] = {}
    for record in registry.list_components(status="all"):
        if record.id in included:
            classes.setdefault(record.silo, set()).update(record.classes)
    tasks: dict[str, tuple[int, ...]] = {}
    owner: dict[int, str] = {}
    for silo in sorted(classes):
        shared = sorted(c for c in classes[silo] if c in owner)
        if shared:
            raise ConfigError(
                f"silos {owner[shared[0]]!r} and {silo!r} share classes {shared[:10]}: "
                "task-incremental evaluation needs disjoint class sets per silo (a class split)"
            )
        owner.update(dict.fromkeys(classes[silo], silo))
        if classes[silo]:
            tasks[silo] = tuple(sorted(classes[silo]))
    if not tasks:
        raise ConfigError(
            f"the silos of version {version.number} record no classes: there is no task"
        )
    return tasks


__all__ = ["ComposedModel", "FederationLabels", "load_inputs", "version_tasks"]
