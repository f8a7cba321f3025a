"""DatasetSpec, SplitSpec and PartitionSpec: validation and the string form of splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tmc.common.data import DatasetSpec, PartitionSpec, SplitSpec
from tmc.common.errors import ConfigError


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagefolder"])
def test_root_is_required_for_file_sources(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        DatasetSpec(name=name)
    error = info.value.errors()[0]
    assert error["loc"] == ("root",)
    assert "root is required" in error["msg"]


def test_known_shapes_without_loading(tmp_path: Path) -> None:
    digits = DatasetSpec(name="digits")
    assert (digits.num_classes, digits.in_channels, digits.input_size) == (10, 1, 8)
    cifar10 = DatasetSpec(name="cifar10", root=tmp_path)
    assert (cifar10.num_classes, cifar10.in_channels, cifar10.input_size) == (10, 3, 32)
    cifar100 = DatasetSpec(name="cifar100", root=tmp_path)
    assert (cifar100.num_classes, cifar100.in_channels) == (100, 3)


def test_imagefolder_classes_from_listing(tmp_path: Path) -> None:
    for name in ("b", "a", ".hidden"):
        (tmp_path / "train" / name).mkdir(parents=True)
    spec = DatasetSpec(name="imagefolder", root=tmp_path, image_size=16)
    assert spec.num_classes == 2
    assert spec.class_folders() == ["a", "b"]
    assert (spec.in_channels, spec.input_size) == (3, 16)
    assert DatasetSpec(name="imagefolder", root=tmp_path).input_size == 64


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "digits", "root": "/data"}, "root must not be set"),
        ({"name": "digits", "download": True}, "download applies"),
        ({"name": "cifar10", "root": "/data", "image_size": 64}, "image_size applies"),
        ({"name": "digits", "colour": True}, "Extra inputs"),
        ({"name": "mnist"}, "digits"),
    ],
)
def test_dataset_spec_rejects_options_that_do_not_apply(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        DatasetSpec.model_validate(fields)


def test_native_image_size_is_accepted() -> None:
    assert DatasetSpec(name="cifar10", root=Path("/d"), image_size=32).input_size == 32


@pytest.mark.parametrize(
    ("text", "kind", "beta", "canonical"),
    [
        ("class", "class", None, "class"),
        ("iid", "iid", None, "iid"),
        (" IID ", "iid", None, "iid"),
        ("dirichlet:0.5", "dirichlet", 0.5, "dirichlet:0.5"),
        ("dirichlet:1", "dirichlet", 1.0, "dirichlet:1.0"),
        ("dirichlet:1e-2", "dirichlet", 0.01, "dirichlet:0.01"),
    ],
)
def test_split_parse_and_canonical_string(
    text: str, kind: str, beta: float | None, canonical: str
) -> None:
    split = SplitSpec.parse(text)
    assert (split.kind, split.beta) == (kind, beta)
    assert str(split) == canonical
    assert SplitSpec.parse(str(split)) == split


@pytest.mark.parametrize(
    "text",
    [
        "",
        "classes",
        "dirichlet",
        "dirichlet:",
        "dirichlet:0",
        "dirichlet:-1",
        "dirichlet:x",
        "dirichlet:nan",
        "dirichlet:inf",
        "iid:2",
    ],
)
def test_split_parse_rejects_bad_strings(text: str) -> None:
    with pytest.raises(ConfigError, match="dirichlet:B"):
        SplitSpec.parse(text)


def test_split_model_checks_beta() -> None:
    with pytest.raises(ValidationError, match="beta"):
        SplitSpec(kind="iid", beta=0.5)
    with pytest.raises(ValidationError, match="beta"):
        SplitSpec(kind="dirichlet")


def test_partition_spec_accepts_the_string_form_and_round_trips() -> None:
    spec = PartitionSpec(split="dirichlet:0.3", num_silos=4, num_increments=2, seed=7)
    assert spec.split == SplitSpec(kind="dirichlet", beta=0.3)
    dumped = spec.model_dump()
    assert dumped["split"] == "dirichlet:0.3"
    assert PartitionSpec.model_validate(dumped) == spec
    assert PartitionSpec.model_validate_json(spec.model_dump_json()) == spec
    assert PartitionSpec(split=SplitSpec(kind="iid"), num_silos=1).public_fraction == 0.2


def test_partition_spec_sorts_public_classes() -> None:
    spec = PartitionSpec(split="iid", num_silos=2, public_classes=(3, 1, 2))
    assert spec.public_classes == (1, 2, 3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"split": "iid", "num_silos": 0}, "num_silos"),
        ({"split": "iid", "num_silos": 10_001}, "num_silos"),
        ({"split": "iid", "num_silos": 2, "num_increments": 0}, "num_increments"),
        ({"split": "iid", "num_silos": 2, "public_fraction": 0.95}, "public_fraction"),
        ({"split": "iid", "num_silos": 2, "public_fraction": -0.1}, "public_fraction"),
        ({"split": "iid", "num_silos": 2, "public_classes": ()}, "at least one class"),
        ({"split": "iid", "num_silos": 2, "public_classes": (1, 1)}, "duplicates"),
        ({"split": "iid", "num_silos": 2, "public_classes": (-1,)}, "non-negative"),
        (
            {"split": "iid", "num_silos": 2, "public_fraction": 0, "public_classes": (1,)},
            "public_fraction is 0",
        ),
        ({"split": "dirichlet:0", "num_silos": 2}, "dirichlet:B"),
        ({"split": "iid", "num_silos": 2, "seed": -1}, "seed"),
    ],
)
def test_partition_spec_rejects(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PartitionSpec.model_validate(fields)
