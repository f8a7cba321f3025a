"""Datasets, splits and silo data for the federation (see ``partition`` for the scheme)."""

from common.data.base import (
    InMemoryDataset,
    IntArray,
    LabeledDataset,
    Shard,
    fingerprint,
    tensors,
)
from common.data.datasets import load_dataset
from common.data.digits import DIGITS_TEST_SIZE, load_digits_split
from common.data.imagefolder import ImageFolderDataset
from common.data.partition import FederatedPartition, derive_seed, silo_name
from common.data.silo_dir import (
    DATA_FILE,
    MANIFEST_FILE,
    SiloData,
    SiloManifest,
    SiloTestSplit,
    export_silo,
    load_silo_dir,
)
from common.data.spec import DatasetName, DatasetSpec, PartitionSpec, SplitSpec
from common.data.splits import (
    label_histogram,
    public_private_split,
    silo_classes,
    split_increments,
    split_silos,
)
from common.data.torchvision_sources import UInt8ImageDataset, load_cifar

__all__ = [
    "DATA_FILE",
    "DIGITS_TEST_SIZE",
    "MANIFEST_FILE",
    "DatasetName",
    "DatasetSpec",
    "FederatedPartition",
    "ImageFolderDataset",
    "InMemoryDataset",
    "IntArray",
    "LabeledDataset",
    "PartitionSpec",
    "Shard",
    "SiloData",
    "SiloManifest",
    "SiloTestSplit",
    "SplitSpec",
    "UInt8ImageDataset",
    "derive_seed",
    "export_silo",
    "fingerprint",
    "label_histogram",
    "load_cifar",
    "load_dataset",
    "load_digits_split",
    "load_silo_dir",
    "public_private_split",
    "silo_classes",
    "silo_name",
    "split_increments",
    "split_silos",
    "tensors",
]
