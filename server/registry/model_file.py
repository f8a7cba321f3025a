"""The full model file (``tmc export``): θ0, a version's composed Δ and what they are.

One safetensors file that the standalone loader (``common.standalone.loader``) runs with
torch alone: tensors ``theta0.<name>`` (the whole state dict of θ0), ``delta.<name>`` (the
version's Δ, one per tangent parameter), and one metadata key, ``tmc.model``, the canonical
JSON of the format and its version, the architecture, the base spec and θ0's hash, the
tangent parameter names, the federation's data spec (class names in label order, input
spec), and the version (number, component ids, weighting, Δ's hash). One key, no
timestamp: the same version always gives the same bytes. The format's names come from the
loader, so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import save

from tmc.common.components import Delta
from tmc.common.data.inputs import DataSpec
from tmc.common.errors import NotFoundError, RegistryError
from tmc.common.standalone.loader import (
    DELTA_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    THETA0_PREFIX,
)
from tmc.server.registry.entities import BaseRecord, ModelVersion, canonical_json


def model_metadata(*, base: BaseRecord, data: DataSpec, version: ModelVersion) -> dict[str, Any]:
    """What the ``tmc.model`` key says about a version's model."""
    spec = json.loads(base.spec_json)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": spec["architecture"],
        "num_classes": spec["num_classes"],
        "in_channels": spec["in_channels"],
        "base_spec": spec,
        "base_sha256": base.sha256,
        "tangent_names": sorted(base.shapes),
        "data": data.model_dump(mode="json"),
        "version": version.number,
        "component_ids": list(version.component_ids),
        "count": version.count,
        "weighting": version.weighting,
        "delta_sha256": version.delta_sha256,
    }


def model_bytes(
    theta0: Mapping[str, torch.Tensor],
    delta: Delta,
    *,
    base: BaseRecord,
    data: DataSpec,
    version: ModelVersion,
) -> bytes:
    """The model file's bytes: a function of (θ0, Δ, base, data spec, version) only."""
    if sorted(delta) != sorted(base.shapes):
        raise RegistryError("internal error: the version's Δ does not cover the base's tangent")
    metadata = canonical_json(model_metadata(base=base, data=data, version=version))
    tensors = {THETA0_PREFIX + name: value.contiguous() for name, value in theta0.items()}
    tensors.update({DELTA_PREFIX + name: value.contiguous() for name, value in delta.items()})
    return save(tensors, metadata={METADATA_KEY: metadata})


def exportable(version: ModelVersion) -> ModelVersion:
    """``version`` itself, or a NotFoundError if its Δ was deleted by a forget."""
    if version.purged:
        raise NotFoundError(
            f"version {version.number} cannot be exported: it contained components that were "
            "forgotten since, so its Δ was deleted (export the current version, or a later one)"
        )
    return version


def require_data(data: DataSpec | None, root: object) -> DataSpec:
    """The registry's data spec, or a RegistryError saying the registry predates it."""
    if data is None:
        raise RegistryError(
            f"the registry at {root} has no data spec (class names, input spec): it was created "
            "before registries stored one; one run of the ServerApp with the same base adds it"
        )
    return data


__all__ = ["exportable", "model_bytes", "model_metadata", "require_data"]
