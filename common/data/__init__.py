"""Datasets, splits and silo data for the federation (see ``partition`` for the scheme)."""

from tmc.common.data.base import (
    InMemoryDataset,
    IntArray,
    LabeledDataset,
    Relabeled,
    Shard,
    fingerprint,
    tensors,
)
from tmc.common.data.dataset_inputs import dataset_data_spec
from tmc.common.data.datasets import in_label_space, load_dataset, load_test_set
from tmc.common.data.digits import DIGITS_TEST_SIZE, load_digits_split
from tmc.common.data.imagefolder import ImageFolderDataset, list_images, load_image_folder
from tmc.common.data.inputs import DataSpec, InputSpec, folder_input, prepare_image
from tmc.common.data.mnist5k import MNIST5K_TEST_SIZE, load_mnist5k_split
from tmc.common.data.partition import FederatedPartition, derive_seed, silo_name
from tmc.common.data.silo_dir import (
    DATA_FILE,
    MANIFEST_FILE,
    SiloData,
    SiloManifest,
    SiloTestSplit,
    export_silo,
    load_silo_dir,
)
from tmc.common.data.silo_folder import (
    INCREMENTS_DIR,
    FolderIncrement,
    SiloFolder,
    is_silo_folder,
    scan_silo_folder,
)
from tmc.common.data.spec import DatasetName, DatasetSpec, PartitionSpec, SplitSpec
from tmc.common.data.splits import (
    label_histogram,
    public_private_split,
    silo_classes,
    split_increments,
    split_silos,
)
from tmc.common.data.torchvision_sources import UInt8ImageDataset, load_cifar

__all__ = [
    "DATA_FILE",
    "DIGITS_TEST_SIZE",
    "INCREMENTS_DIR",
    "MANIFEST_FILE",
    "MNIST5K_TEST_SIZE",
    "DataSpec",
    "DatasetName",
    "DatasetSpec",
    "FederatedPartition",
    "FolderIncrement",
    "ImageFolderDataset",
    "InMemoryDataset",
    "InputSpec",
    "IntArray",
    "LabeledDataset",
    "PartitionSpec",
    "Relabeled",
    "Shard",
    "SiloData",
    "SiloFolder",
    "SiloManifest",
    "SiloTestSplit",
    "SplitSpec",
    "UInt8ImageDataset",
    "dataset_data_spec",
    "derive_seed",
    "export_silo",
    "fingerprint",
    "folder_input",
    "in_label_space",
    "is_silo_folder",
    "label_histogram",
    "list_images",
    "load_cifar",
    "load_dataset",
    "load_digits_split",
    "load_image_folder",
    "load_mnist5k_split",
    "load_silo_dir",
    "load_test_set",
    "prepare_image",
    "public_private_split",
    "scan_silo_folder",
    "silo_classes",
    "silo_name",
    "split_increments",
    "split_silos",
    "tensors",
]
