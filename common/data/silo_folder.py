"""A silo's own images as a plain folder: what a hospital or a factory actually has.

Accepted layouts (the class folders' names are the classes, mapped onto the federation's
label space by name, whatever order they sort in)::

    DIR/<class>/<image>                   all for training; a held-out fraction for testing
    DIR/train/<class>/<image>             training images
    DIR/test/<class>/<image>              (optional) the silo's local test images

:func:`scan_silo_folder` lists the files and reads every image's header (not its pixels)
to know its channels, so that a silo of grayscale scans in an RGB federation is refused
at hello with a clear reason instead of failing in training. Its fingerprint names the
files (relative path, size, class), so the server sees when a silo's data changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.data.folders import TEST_DIR, TRAIN_DIR, list_class_dirs
from common.data.imagefolder import ImageFolderDataset, list_images
from common.data.inputs import DataSpec, native_channels
from common.errors import DataError

_HOLD_OUT_SEED = b"tmc-silo-test-split"


@dataclass(frozen=True)
class FolderSplit:
    """The files of one split: ``(path, index into the folder's class names)``."""

    files: tuple[tuple[Path, int], ...]

    def counts(self, num_classes: int) -> tuple[int, ...]:
        counts = np.bincount([c for _, c in self.files], minlength=num_classes)
        return tuple(int(n) for n in counts)


@dataclass(frozen=True)
class SiloFolder:
    """A scanned silo folder: its class names (sorted folder names), train and test files,
    the channels its training images are stored with, and a digest of its file list."""

    root: Path
    class_names: tuple[str, ...]
    train: FolderSplit
    test: FolderSplit
    channels: tuple[int, ...]
    digest: str

    @property
    def identity(self) -> str:
        return f"imagefolder[{self.root.name}]:{self.digest[:16]}"

    def datasets(self, data: DataSpec) -> tuple[ImageFolderDataset, ImageFolderDataset | None]:
        """Train and test sets in the federation's label space and input spec. Images of
        classes the federation does not know are left out (the caller refuses a silo whose
        training images include any: see ``common.federation.data_problems``)."""
        index = {name: i for i, name in enumerate(data.classes)}
        mapping = [index.get(name, -1) for name in self.class_names]

        def build(split: FolderSplit, part: str) -> ImageFolderDataset:
            kept = [(path, mapping[c]) for path, c in split.files if mapping[c] >= 0]
            return ImageFolderDataset(
                [path for path, _ in kept],
                [label for _, label in kept],
                classes=data.classes,
                input_spec=data.input,
                identity=f"{self.identity}:{part}",
            )

        test = build(self.test, "test")
        return build(self.train, "train"), (test if len(test) else None)


def _held_out(files: list[tuple[Path, int]], fraction: float, names: tuple[str, ...]) -> set[Path]:
    """A stratified, deterministic ``fraction`` of ``files`` per class (at least one image
    stays for training). Seeded by the class's files, not a run's seed: the same folder
    always splits the same way."""
    held: set[Path] = set()
    by_class: dict[int, list[Path]] = {}
    for path, label in files:
        by_class.setdefault(label, []).append(path)
    for label, paths in by_class.items():
        count = min(len(paths) - 1, round(fraction * len(paths)))
        if count <= 0:
            continue
        seed = hashlib.sha256(_HOLD_OUT_SEED + names[label].encode()).digest()
        order = np.random.default_rng(int.from_bytes(seed[:8], "little")).permutation(len(paths))
        held.update(paths[int(i)] for i in order[:count])
    return held


def _channels(files: tuple[tuple[Path, int], ...]) -> tuple[int, ...]:
    found: set[int] = set()
    for path, _ in files:
        try:
            with Image.open(path) as image:  # reads the header only
                found.add(native_channels(image.mode))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from exc
    return tuple(sorted(found))


def _digest(root: Path, class_names: tuple[str, ...], splits: dict[str, FolderSplit]) -> str:
    digest = hashlib.sha256(b"tmc-silo-folder-v1\0")
    for part, split in sorted(splits.items()):
        for path, label in split.files:
            line = f"{part}\0{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0"
            digest.update((line + class_names[label] + "\n").encode())
    return digest.hexdigest()


def is_silo_folder(path: Path) -> bool:
    """Whether ``path`` looks like an image folder (a ``train/`` folder, or class folders)."""
    return path.is_dir() and any(entry.is_dir() for entry in path.iterdir())


def scan_silo_folder(root: Path, *, test_fraction: float = 0.0) -> SiloFolder:
    """List a silo folder (see the module doc); ``test_fraction`` of each class is held out
    for local testing when there is no ``test/`` folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"silo data folder {root} does not exist or is not a directory")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test fraction must be in [0, 1), got {test_fraction}")
    has_train = (root / TRAIN_DIR).is_dir()
    train_dir = root / TRAIN_DIR if has_train else root
    test_dir = root / TEST_DIR if has_train and (root / TEST_DIR).is_dir() else None
    train_names = list_class_dirs(train_dir)
    test_names = list_class_dirs(test_dir) if test_dir is not None else []
    names = tuple(sorted(set(train_names) | set(test_names)))
    train_files = list_images(train_dir, names)
    if test_dir is not None:
        test_files = list_images(test_dir, names)
    else:
        held = _held_out(train_files, test_fraction, names) if test_fraction else set()
        test_files = [item for item in train_files if item[0] in held]
        train_files = [item for item in train_files if item[0] not in held]
    train, test = FolderSplit(tuple(train_files)), FolderSplit(tuple(test_files))
    return SiloFolder(
        root=root,
        class_names=names,
        train=train,
        test=test,
        channels=_channels(train.files),
        digest=_digest(root, names, {"train": train, "test": test}),
    )


__all__ = ["FolderSplit", "SiloFolder", "is_silo_folder", "scan_silo_folder"]
