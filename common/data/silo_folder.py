"""A silo's own images as a plain folder: what a hospital or a factory actually has.

Accepted layouts (the class folders' names are the classes, mapped onto the federation's
label space by name, whatever order they sort in)::

    DIR/<class>/<image>                   all for training; a held-out fraction for testing
    DIR/train/<class>/<image>             training images
    DIR/test/<class>/<image>              (optional) the silo's local test images
    DIR/increments/<name>/<class>/<image> one increment per sub-folder, in name order
                                          (with an optional DIR/test/)

The first two are one increment. The third is how a silo's data grow: each new batch of
images (a month of scans, a new product line) goes into a new sub-folder that sorts after
the others, and the next round trains a component on it alone, leaving the components of
the earlier increments untouched (continual learning by adding components). An increment
already contributed must not change: its fingerprint would differ and the server refuses
the silo until it is forgotten and readmitted.

:func:`scan_silo_folder` lists the files and reads every image's header (not its pixels)
to know its channels, so that a silo of grayscale scans in an RGB federation is refused
at hello with a clear reason instead of failing in training. Fingerprints name the files
(relative path, size, class), so the server sees when a silo's data changed; with
``increments/`` each increment's fingerprint depends on its own files only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmc.common.data.folder_walk import FolderWalker
from tmc.common.data.folders import TEST_DIR, TRAIN_DIR, list_class_dirs
from tmc.common.data.imagefolder import ImageFolderDataset, is_image_name, list_images
from tmc.common.data.inputs import DataSpec, native_channels, open_image
from tmc.common.errors import DataError

_HOLD_OUT_SEED = b"tmc-silo-test-split"
INCREMENTS_DIR = "increments"


@dataclass(frozen=True)
class FolderSplit:
    """The files of one split: ``(path, index into the folder's class names)``."""

    files: tuple[tuple[Path, int], ...]

    def counts(self, num_classes: int) -> tuple[int, ...]:
        counts = np.bincount([c for _, c in self.files], minlength=num_classes)
        return tuple(int(n) for n in counts)


@dataclass(frozen=True)
class FolderIncrement:
    """The training files of one increment. ``name`` is its sub-folder of ``increments/``,
    or ``""`` for a folder without increments (then the whole folder is one increment)."""

    name: str
    train: FolderSplit
    identity: str
    """Names the increment's data in its fingerprint: the folder, the increment, a digest."""


@dataclass(frozen=True)
class SiloFolder:
    """A scanned silo folder: its class names (sorted folder names), its increments, all
    training and test files, the channels its training images are stored with, and a
    digest of its whole file list."""

    root: Path
    class_names: tuple[str, ...]
    increments: tuple[FolderIncrement, ...]
    test: FolderSplit
    channels: tuple[int, ...]
    digest: str

    @property
    def identity(self) -> str:
        return f"imagefolder[{self.root.name}]:{self.digest[:16]}"

    @property
    def train(self) -> FolderSplit:
        """Every increment's training files."""
        return FolderSplit(tuple(item for inc in self.increments for item in inc.train.files))

    def increment_sets(self, data: DataSpec) -> tuple[ImageFolderDataset, ...]:
        """Each increment's training images in the federation's label space and input spec.
        Images of classes the federation does not know are left out (the caller refuses a
        silo whose training images include any: see ``common.federation.data_problems``)."""
        return tuple(
            self._dataset(inc.train, data, f"{inc.identity}:train") for inc in self.increments
        )

    def test_set(self, data: DataSpec) -> ImageFolderDataset | None:
        """The local test images (``None`` when there are none), as :meth:`increment_sets`."""
        test = self._dataset(self.test, data, f"{self.identity}:test")
        return test if len(test) else None

    def _dataset(self, split: FolderSplit, data: DataSpec, identity: str) -> ImageFolderDataset:
        index = {name: i for i, name in enumerate(data.classes)}
        mapping = [index.get(name, -1) for name in self.class_names]
        kept = [(path, mapping[c]) for path, c in split.files if mapping[c] >= 0]
        return ImageFolderDataset(
            [path for path, _ in kept],
            [label for _, label in kept],
            classes=data.classes,
            input_spec=data.input,
            identity=identity,
        )


def _held_out(
    files: list[tuple[Path, int]], fraction: float, names: tuple[str, ...], increment: str
) -> set[Path]:
    """A stratified, deterministic ``fraction`` of ``files`` per class (at least one image
    stays for training). Seeded by the increment and class, not a run's seed: the same
    folder always splits the same way, and a new increment leaves the others' split alone."""
    held: set[Path] = set()
    by_class: dict[int, list[Path]] = {}
    for path, label in files:
        by_class.setdefault(label, []).append(path)
    prefix = _HOLD_OUT_SEED + (f"\0{increment}\0".encode() if increment else b"")
    for label, paths in by_class.items():
        count = min(len(paths) - 1, round(fraction * len(paths)))
        if count <= 0:
            continue
        seed = hashlib.sha256(prefix + names[label].encode()).digest()
        order = np.random.default_rng(int.from_bytes(seed[:8], "little")).permutation(len(paths))
        held.update(paths[int(i)] for i in order[:count])
    return held


def _channels(files: tuple[tuple[Path, int], ...]) -> tuple[int, ...]:
    found: set[int] = set()
    for path, _ in files:
        with open_image(path) as image:  # reads the header only
            found.add(native_channels(image.mode))
    return tuple(sorted(found))


def _digest(root: Path, class_names: tuple[str, ...], splits: dict[str, FolderSplit]) -> str:
    digest = hashlib.sha256(b"tmc-silo-folder-v1\0")
    for part, split in sorted(splits.items()):
        for path, label in split.files:
            line = f"{part}\0{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0"
            digest.update((line + class_names[label] + "\n").encode())
    return digest.hexdigest()


def is_silo_folder(path: Path) -> bool:
    """Whether ``path`` looks like an image folder (``train/``, ``increments/`` or class
    folders)."""
    return path.is_dir() and any(entry.is_dir() for entry in path.iterdir())


def _increment_dirs(root: Path) -> list[Path]:
    folder = root / INCREMENTS_DIR
    if (root / TRAIN_DIR).is_dir():
        raise DataError(
            f"silo folder {root} has both {INCREMENTS_DIR}/ and {TRAIN_DIR}/: put the training "
            f"images in {INCREMENTS_DIR}/<name>/<class>/ only"
        )
    found = sorted(
        entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not found:
        raise DataError(
            f"{folder} has no increment folders (expected {INCREMENTS_DIR}/<name>/<class>/<image>)"
        )
    return found


def scan_silo_folder(root: Path, *, test_fraction: float = 0.0) -> SiloFolder:
    """List a silo folder (see the module doc); ``test_fraction`` of each class (of each
    increment) is held out for local testing when there is no ``test/`` folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"silo data folder {root} does not exist or is not a directory")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test fraction must be in [0, 1), got {test_fraction}")
    if (root / INCREMENTS_DIR).is_dir():
        parts = {d.name: d for d in _increment_dirs(root)}
    else:
        parts = {"": root / TRAIN_DIR if (root / TRAIN_DIR).is_dir() else root}
    # In the flat layout a folder named "test" is a class, as it always was.
    layered = (root / INCREMENTS_DIR).is_dir() or (root / TRAIN_DIR).is_dir()
    test_dir = root / TEST_DIR if layered and (root / TEST_DIR).is_dir() else None
    part_names = {name: list_class_dirs(folder) for name, folder in parts.items()}
    test_names = list_class_dirs(test_dir) if test_dir is not None else []
    names = tuple(sorted({n for found in part_names.values() for n in found} | set(test_names)))
    trains: dict[str, list[tuple[Path, int]]] = {}
    # One walk of the whole folder: links stay inside it, no image is in two splits.
    walker = FolderWalker(root, is_image_name)
    test_files = list_images(test_dir, names, walker=walker) if test_dir else []
    for name, folder in parts.items():
        files = list_images(folder, names, walker=walker)
        if name and not files:
            raise DataError(f"increment folder {folder} holds no images")
        if test_dir is None and test_fraction:
            held = _held_out(files, test_fraction, names, name)
            test_files += [item for item in files if item[0] in held]
            files = [item for item in files if item[0] not in held]
        trains[name] = files
    test = FolderSplit(tuple(test_files))
    train = FolderSplit(tuple(item for files in trains.values() for item in files))
    digest = _digest(root, names, {"train": train, "test": test})
    increments = tuple(
        FolderIncrement(
            name=name,
            train=FolderSplit(tuple(files)),
            identity=(
                f"imagefolder[{root.name}]/{name}:"
                f"{_digest(root, names, {'train': FolderSplit(tuple(files))})[:16]}"
                if name
                else f"imagefolder[{root.name}]:{digest[:16]}"
            ),
        )
        for name, files in trains.items()
    )
    return SiloFolder(
        root=root,
        class_names=names,
        increments=increments,
        test=test,
        channels=_channels(train.files),
        digest=digest,
    )


__all__ = [
    "INCREMENTS_DIR",
    "FolderIncrement",
    "FolderSplit",
    "SiloFolder",
    "is_silo_folder",
    "scan_silo_folder",
]
