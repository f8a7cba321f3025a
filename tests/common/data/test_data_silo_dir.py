"""A silo's data written to a folder and read back; damaged folders are DataErrors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tmc.common.data import (
    DATA_FILE,
    MANIFEST_FILE,
    DatasetSpec,
    FederatedPartition,
    PartitionSpec,
    export_silo,
    fingerprint,
    load_silo_dir,
    tensors,
)
from tmc.common.errors import DataError


@pytest.fixture(scope="module")
def partition() -> FederatedPartition:
    spec = PartitionSpec(split="dirichlet:1.0", num_silos=3, num_increments=3, seed=5)
    return FederatedPartition(DatasetSpec(name="digits"), spec)


def test_round_trip_with_test_split(partition: FederatedPartition, tmp_path: Path) -> None:
    manifest = export_silo(partition, 2, tmp_path / "silo", include_test=True)
    data = load_silo_dir(tmp_path / "silo")
    assert data.manifest == manifest
    assert (data.name, manifest.dataset, manifest.identity) == ("silo-2", "digits", "digits:train")
    assert (manifest.num_classes, manifest.in_channels, manifest.image_shape) == (10, 1, (1, 8, 8))
    shard = partition.silo_shard(2)
    assert manifest.fingerprint == fingerprint(shard) == fingerprint(data.shard())
    assert list(manifest.classes) == sorted(set(shard.targets.tolist()))
    assert data.num_increments == 3
    for r in range(3):
        original, loaded = partition.silo_shard(2, r), data.shard(r)
        assert manifest.increment_sizes[r] == len(original) == len(loaded)
        assert fingerprint(loaded) == fingerprint(original) == manifest.increment_fingerprints[r]
        assert torch.equal(tensors(loaded)[0], tensors(original)[0])
        assert torch.equal(tensors(loaded)[1], tensors(original)[1])
    assert data.test is not None
    assert len(data.test) == 540
    assert fingerprint(data.test) == fingerprint(partition.test_dataset())
    assert torch.equal(tensors(data.test)[0], tensors(partition.test_dataset())[0])
    with pytest.raises(DataError, match="not 3"):
        data.shard(3)


def test_round_trip_without_test_split(partition: FederatedPartition, tmp_path: Path) -> None:
    export_silo(partition, 0, tmp_path)
    data = load_silo_dir(tmp_path)
    assert data.test is None
    assert data.manifest.test is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [DATA_FILE, MANIFEST_FILE]
    export_silo(partition, 1, tmp_path)  # overwrites in place
    assert load_silo_dir(tmp_path).name == "silo-1"


def _rewrite(key: str, change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        tensors_ = load_file(str(folder / DATA_FILE))
        tensors_[key] = change(tensors_.get(key, torch.zeros(1))).contiguous()
        save_file(tensors_, str(folder / DATA_FILE))

    return damage


def _edit_manifest(field: str, value: object) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        manifest[field] = value
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest))

    return damage


def _truncate(folder: Path) -> None:
    raw = (folder / DATA_FILE).read_bytes()
    (folder / DATA_FILE).write_bytes(raw[: len(raw) // 2])


def _labels_out_of_range(labels: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.arange(len(labels)) == 0, torch.tensor(12), labels)


def _nudge(images: torch.Tensor) -> torch.Tensor:
    images = images.clone()
    images[0, 0, 0, 0] += 0.5
    return images


DAMAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "no manifest": (lambda d: (d / MANIFEST_FILE).unlink(), f"no {MANIFEST_FILE}"),
    "no data": (lambda d: (d / DATA_FILE).unlink(), f"no {DATA_FILE}"),
    "manifest not json": (
        lambda d: (d / MANIFEST_FILE).write_text("{oops"),
        f"{MANIFEST_FILE} is not a valid silo manifest",
    ),
    "manifest unknown field": (_edit_manifest("owner", "x"), "not a valid silo manifest"),
    "manifest sizes": (_edit_manifest("increment_sizes", [1, 1, 1]), "increment sizes"),
    "truncated data": (_truncate, "not a readable safetensors file"),
    "label out of range": (_rewrite("labels", _labels_out_of_range), r"outside \[0, 10\)"),
    "wrong image shape": (_rewrite("images", lambda x: x[:, :, :4, :]), "expected float32"),
    "wrong dtype": (_rewrite("labels", lambda y: y.to(torch.int32)), "int64"),
    "altered pixels": (_rewrite("images", _nudge), "does not match the sha256"),
    "nan pixels": (_rewrite("images", lambda x: x * float("nan")), "NaN"),
    "extra tensor": (_rewrite("extra", lambda _: torch.zeros(1)), "holds tensors"),
    "bad increment": (_rewrite("increments", lambda r: r + 5), "increments outside"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_silo_folder_is_a_data_error(
    partition: FederatedPartition, tmp_path: Path, damage: str
) -> None:
    folder = tmp_path / "silo"
    export_silo(partition, 1, folder)
    break_it, message = DAMAGES[damage]
    break_it(folder)
    with pytest.raises(DataError, match=message) as info:
        load_silo_dir(folder)
    assert str(folder) in str(info.value), "the error names the folder or file"


def test_missing_silo_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_silo_dir(tmp_path / "absent")
