"""Listing a folder of images that someone else filled: links and special files refused.

A silo's folder is hostile input as far as the node is concerned. The walk here

- never follows a link to a place outside the folder it lists (the images would be
  counted from elsewhere, perhaps under another class),
- reads every folder and every file at most once (a link loop, or a link to a folder or
  image already read, is refused instead of being walked again, exponentially),
- refuses a dangling or looping link named like an image, and anything named like an
  image that is not a regular file (a FIFO would block the reader forever, a device would
  be read without end), by name, without opening it.

Every refusal is one :class:`DataError` naming the entry and the reason.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from tmc.common.errors import DataError

_SPECIAL_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _SPECIAL_KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _is_dir(entry: os.DirEntry[str], path: Path) -> bool:
    try:
        return entry.is_dir()
    except OSError as exc:  # a link to itself: ELOOP from the stat behind is_dir
        raise DataError(f"{path} is a link loop: fix or remove it") from exc


class FolderWalker:
    """Listings under one folder, ``within``, that never leave it and never share a file or
    a folder (the class folders of one split: an image linked into two classes is refused).
    ``is_wanted(name)`` says which file names are listed (and so checked)."""

    def __init__(self, within: Path, is_wanted: Callable[[str], bool]) -> None:
        self._base = os.path.realpath(within)
        self._is_wanted = is_wanted
        self._dirs: dict[str, Path] = {}
        self._files: dict[str, Path] = {}

    def files(self, folder: Path) -> list[Path]:
        """The wanted files under ``folder`` (nested folders included, hidden entries
        skipped), sorted; a :class:`DataError` for what the module doc says is refused."""
        return sorted(self._folder(Path(folder)))

    def _real(self, path: Path) -> str:
        """The real path behind ``path``, refused when dangling, looping or leading out."""
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            reason = "a link loop" if exc.errno == errno.ELOOP else "a dangling link"
            raise DataError(f"{path} is {reason}: fix or remove it") from exc
        if real != self._base and not real.startswith(self._base + os.sep):
            raise DataError(
                f"{path} is a link leading out of the folder {self._base} (to {real}): copy "
                "the files in instead"
            )
        return real

    def _folder(self, path: Path) -> list[Path]:
        real = self._real(path)
        if real in self._dirs:
            raise DataError(
                f"{path} and {self._dirs[real]} are the same folder (through a link): a link "
                "loop, or the same images twice"
            )
        self._dirs[real] = path
        try:
            entries = sorted(os.scandir(path), key=lambda entry: entry.name)
        except OSError as exc:
            raise DataError(f"cannot list {path}: {exc.strerror or exc}") from exc
        found: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = path / entry.name
            if _is_dir(entry, child):  # through a link too: _folder refuses one leading out
                found.extend(self._folder(child))
            elif self._is_wanted(entry.name):
                found.append(self._file(child))
        return found

    def _file(self, path: Path) -> Path:
        real = self._real(path)
        mode = os.stat(real).st_mode  # a stat, never an open: opening a FIFO blocks
        if not stat.S_ISREG(mode):
            raise DataError(f"{path} is named like an image but is {_kind(mode)}: remove it")
        if real in self._files:
            raise DataError(
                f"{path} and {self._files[real]} are the same file (through a link): each "
                "image is read once"
            )
        self._files[real] = path
        return path


__all__ = ["FolderWalker"]
