"""The full model file: θ0, a version's Δ and metadata; deterministic, audited, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load, save

from tests.registries import digits_registry
from tmc.common.errors import NotFoundError, RegistryError
from tmc.common.hashing import tensors_sha256
from tmc.common.models import MaterializedBase
from tmc.common.standalone import METADATA_KEY
from tmc.server.registry import Registry
from tmc.server.registry.blobs import safetensors_metadata, sha256_hex


@pytest.fixture
def root(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    return digits_registry(tmp_path / "registry", digits_base, rounds=2)


def test_the_file_holds_theta0_the_delta_and_what_they_are(
    root: Path, digits_base: MaterializedBase
) -> None:
    with Registry.open(root, actor="test") as registry:
        data = registry.export_model_bytes(actor="test")
        version = registry.version()
        delta = registry.composed_delta()
    tensors = load(data)
    theta0 = {k.removeprefix("theta0."): v for k, v in tensors.items() if k.startswith("theta0.")}
    got = {k.removeprefix("delta."): v for k, v in tensors.items() if k.startswith("delta.")}
    assert len(theta0) + len(got) == len(tensors)
    assert tensors_sha256(theta0) == digits_base.sha256
    assert set(theta0) == set(digits_base.network.state_dict())
    assert tensors_sha256(got) == tensors_sha256(delta) == version.delta_sha256
    info = json.loads(safetensors_metadata(data)[METADATA_KEY])
    assert list(safetensors_metadata(data)) == [METADATA_KEY]
    assert info["format"] == "tmc-model"
    assert info["format_version"] == 1
    assert info["architecture"] == "small-cnn"
    assert info["base_sha256"] == digits_base.sha256
    assert info["base_spec"] == json.loads(digits_base.spec.canonical_json())
    assert info["tangent_names"] == sorted(digits_base.tangent_names)
    assert info["data"]["classes"] == [str(d) for d in range(10)]
    assert info["data"]["input"] == {
        "channels": 1,
        "size": 8,
        "mean": None,
        "std": None,
        "invert": True,
    }
    assert info["version"] == version.number == 2
    assert info["component_ids"] == list(version.component_ids)
    assert info["weighting"] == "uniform"
    assert info["delta_sha256"] == version.delta_sha256


def test_same_version_same_bytes_and_each_export_is_audited(root: Path, tmp_path: Path) -> None:
    with Registry.open(root, actor="test") as registry:
        first = registry.export_model_bytes(actor="alice")
        sha = registry.export_model(tmp_path / "model.safetensors", actor="bob")
        past = registry.export_model_bytes(1, actor="carol")
        exports = [e for e in registry.audit_log() if e.action == "export"]
    assert (tmp_path / "model.safetensors").read_bytes() == first
    assert sha == sha256_hex(first)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o600
    assert json.loads(safetensors_metadata(past)[METADATA_KEY])["version"] == 1
    assert past != first
    assert [(e.actor, e.details["version"], e.details["kind"]) for e in exports] == [
        ("alice", 2, "model"),
        ("bob", 2, "model"),
        ("carol", 1, "model"),
    ]
    assert exports[1].hashes["export"] == sha
    assert exports[1].details["path"] == str(tmp_path / "model.safetensors")


def test_purged_and_unknown_versions_are_refused(root: Path) -> None:
    with Registry.open(root, actor="test") as registry:
        registry.forget(silo="silo-1", actor="test", reason="asked")
        before = len(registry.audit_log())
        with pytest.raises(NotFoundError, match=r"version 2 cannot be exported.*forgotten"):
            registry.export_model_bytes(2)
        with pytest.raises(NotFoundError, match="no version 9"):
            registry.export_model_bytes(9)
        assert len(registry.audit_log()) == before  # a refused export is not an export
        assert (
            json.loads(safetensors_metadata(registry.export_model_bytes())[METADATA_KEY])["version"]
            == registry.version().number
        )


def test_a_registry_without_theta0_or_data_spec_says_so(
    tmp_path: Path, digits_base: MaterializedBase
) -> None:
    old = digits_registry(tmp_path / "old", digits_base, theta0=False)
    with Registry.open(old, actor="test") as registry, pytest.raises(RegistryError) as caught:
        registry.export_model_bytes()
    message = str(caught.value)
    assert "\n" not in message
    assert "does not hold θ0" in message
    assert "created before" in message
    nodata = digits_registry(tmp_path / "nodata", digits_base, data=False)
    with Registry.open(nodata, actor="test") as registry, pytest.raises(RegistryError) as caught:
        registry.export_model_bytes()
    assert "no data spec" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_tampered_theta0_is_not_exported(root: Path) -> None:
    stored = next((root / "base").glob("*.safetensors"))
    stored.chmod(0o600)
    state = load(stored.read_bytes())
    first = sorted(state)[0]
    state[first] = state[first] + 1
    stored.write_bytes(save(state))
    with Registry.open(root, actor="test") as registry, pytest.raises(RegistryError, match="θ0"):
        registry.export_model_bytes()
