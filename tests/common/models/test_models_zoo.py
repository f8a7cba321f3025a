"""Base models: specs, the zoo, seeded heads, θ0 hashes, weights from files, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from tmc.common.errors import ConfigError, ModelError
from tmc.common.hashing import tensors_sha256
from tmc.common.models import (
    BaseModelSpec,
    FileWeights,
    MaterializedBase,
    TorchHubWeights,
    build_network,
    from_theta0,
    materialize,
)
from tmc.common.models.materialize import spec_sha256
from tmc.common.models.weights import file_sha256


def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="num_classes"):
        BaseModelSpec(num_classes=1)
    with pytest.raises(ValidationError, match="architecture"):
        BaseModelSpec(architecture="vgg")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least one module"):
        BaseModelSpec(tangent=())
    with pytest.raises(ValidationError, match="extra"):
        BaseModelSpec.model_validate({"architecture": "small-cnn", "lerning_rate": 1})


def test_tangent_scopes() -> None:
    full = materialize(BaseModelSpec(tangent="full"))
    last = materialize(BaseModelSpec(tangent="last-stage"))
    every = materialize(BaseModelSpec(tangent="all"))
    assert all(n.startswith(("layer1.", "layer2.", "fc.")) for n in full.tangent_names)
    assert all(n.startswith(("layer2.", "fc.")) for n in last.tangent_names)
    assert set(last.tangent_names) < set(full.tangent_names) < set(every.tangent_names)
    assert any(n.startswith("stem.") for n in every.tangent_names)
    explicit = materialize(BaseModelSpec(tangent=("fc",)))
    assert explicit.tangent_names == ("fc.bias", "fc.weight")
    with pytest.raises(ConfigError, match="nope"):
        materialize(BaseModelSpec(tangent=("nope",)))
    resnet = materialize(
        BaseModelSpec(architecture="resnet18", in_channels=3, tangent="last-stage")
    )
    assert {n.split(".")[0] for n in resnet.tangent_names} == {"layer4", "fc"}


def test_theta0_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = materialize(BaseModelSpec(head_seed=5))
    assert torch.equal(torch.rand(1), expected_next)
    b = materialize(BaseModelSpec(head_seed=5))
    c = materialize(BaseModelSpec(head_seed=6))
    assert a.sha256 == b.sha256 == tensors_sha256(a.theta0())
    assert a.sha256 != c.sha256
    assert torch.equal(a.network.stem[0].weight, c.network.stem[0].weight)  # only the head differs
    assert not torch.equal(a.network.fc.weight, c.network.fc.weight)


def test_from_theta0_checks_the_hash() -> None:
    base = materialize(BaseModelSpec())
    again = from_theta0(base.spec, base.theta0(), expected_sha256=base.sha256)
    assert again.sha256 == base.sha256
    corrupted = base.theta0()
    corrupted["fc.bias"] = corrupted["fc.bias"] + 1e-3
    with pytest.raises(ModelError, match="hashes to"):
        from_theta0(base.spec, corrupted, expected_sha256=base.sha256)
    with pytest.raises(ModelError, match="do not fit"):
        from_theta0(base.spec, {"fc.bias": torch.zeros(10)}, expected_sha256=base.sha256)


def test_resnet_weights_from_a_local_file(tmp_path: Path) -> None:
    spec = BaseModelSpec(architecture="resnet18", in_channels=3, num_classes=1000)
    donor = build_network(spec, seed=42)
    path = tmp_path / "resnet18.pth"
    torch.save(donor.state_dict(), path)
    ten = BaseModelSpec(
        architecture="resnet18",
        in_channels=3,
        num_classes=10,
        head_seed=3,
        weights=FileWeights(path=path, sha256=file_sha256(path)),
    )
    base = materialize(ten)
    assert torch.equal(base.network.layer1[0].conv1.weight, donor.layer1[0].conv1.weight)
    assert base.network.fc.weight.shape == (10, 512)  # ImageNet head replaced, seeded
    assert materialize(ten).sha256 == base.sha256
    st_path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(st_path))
    same = materialize(ten.model_copy(update={"weights": FileWeights(path=st_path)}))
    assert same.sha256 == base.sha256


def test_bad_weight_files_are_refused(tmp_path: Path) -> None:
    missing = BaseModelSpec(
        architecture="resnet18", in_channels=3, weights=FileWeights(path=tmp_path / "none.pth")
    )
    with pytest.raises(ModelError, match="does not exist"):
        materialize(missing)
    path = tmp_path / "w.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="sha256"):
        materialize(missing.model_copy(update={"weights": FileWeights(path=path, sha256="0" * 64)}))
    with pytest.raises(ModelError, match="do not fit"):
        materialize(missing.model_copy(update={"weights": FileWeights(path=path)}))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        materialize(missing.model_copy(update={"weights": FileWeights(path=junk)}))


def test_hub_weights_are_never_downloaded_unasked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = BaseModelSpec(architecture="resnet18", in_channels=3, weights=TorchHubWeights())
    with pytest.raises(ModelError, match="not in the torch hub cache"):
        materialize(spec)
    donor = build_network(spec.model_copy(update={"num_classes": 1000}))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(donor.state_dict(), cache / "resnet18-f37072fd.pth")
    base = materialize(spec)
    assert torch.equal(base.network.conv1.weight, donor.conv1.weight)
    with pytest.raises(ModelError, match="no weights"):
        materialize(spec.model_copy(update={"weights": TorchHubWeights(name="NOPE")}))


def test_builtin_digits_base_is_cached_by_hash(
    digits_base: MaterializedBase, tmc_cache: Path
) -> None:
    cached = tmc_cache / "bases" / f"{spec_sha256(digits_base.spec)}.safetensors"
    assert cached.is_file()
    assert materialize(digits_base.spec, cache_dir=tmc_cache).sha256 == digits_base.sha256
    assert digits_base.network.fc.out_features == 10


def test_corrupted_cache_is_reported(tmp_path: Path) -> None:
    spec = BaseModelSpec.builtin_digits(seed=9).model_copy(
        update={
            "weights": BaseModelSpec.builtin_digits(seed=9).weights.model_copy(update={"epochs": 1})
        }
    )
    base = materialize(spec, cache_dir=tmp_path)
    path = tmp_path / "bases" / f"{spec_sha256(spec)}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="delete it"):
        materialize(spec, cache_dir=tmp_path)
    assert base.sha256
