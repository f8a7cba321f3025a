"""Hostile silo folders: special files named like images, link loops, links out of the
folder, headers claiming huge images, dangling links. Each is refused in one line naming
the entry, without hanging (pytest-timeout ends a test that blocks, e.g. on a FIFO)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.images import write_images
from tmc.cli import app
from tmc.common.data import load_image_folder, scan_silo_folder
from tmc.common.data.dataset_inputs import folder_input
from tmc.common.data.inputs import MAX_IMAGE_PIXELS, read_image
from tmc.common.errors import DataError

pytestmark = pytest.mark.timeout(5)


def _silo(tmp_path: Path) -> Path:
    root = tmp_path / "silo"
    write_images(root, {"cat": 2, "dog": 2})
    return root


def _refusal(root: Path) -> str:
    with pytest.raises(DataError) as caught:
        scan_silo_folder(root)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header claims ``width``×``height`` (a few bytes of pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def test_a_fifo_named_like_an_image_is_refused_unopened(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    os.mkfifo(root / "cat" / "scan.png")  # opening it for reading would block forever
    message = _refusal(root)
    assert "scan.png" in message
    assert "FIFO" in message


def test_a_device_named_like_an_image_is_refused(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    (root / "dog" / "zero.jpg").symlink_to("/dev/zero")
    message = _refusal(root)
    # /dev/zero is outside the folder: the link is refused before its target is looked at
    assert "zero.jpg" in message
    assert "leading out" in message


def test_a_link_loop_is_refused_not_walked(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    for name in ("a", "b", "c", "d", "e", "f"):  # followed, this walk is 2**6 deep copies
        (root / "cat" / name).symlink_to(".")
    message = _refusal(root)
    assert "same folder" in message
    assert str(root / "cat") in message


def test_a_link_to_itself_is_refused(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    (root / "cat" / "self.png").symlink_to("self.png")
    (root / "dog" / "loop").symlink_to("loop")
    message = _refusal(root)
    assert "link loop" in message


def test_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    write_images(tmp_path / "elsewhere", {"fish": 3})
    (root / "cat" / "more").symlink_to(tmp_path / "elsewhere" / "fish")
    message = _refusal(root)
    assert "more" in message
    assert "leading out" in message


def test_an_image_linked_into_another_class_is_refused(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    (root / "dog" / "also-a-dog.png").symlink_to(root / "cat" / "0.png")
    message = _refusal(root)
    assert "same file" in message
    assert "also-a-dog.png" in message


def test_links_inside_the_folder_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "silo"
    write_images(tmp_path / "silo" / "store", {"cat": 2, "dog": 3})
    (root / "train").mkdir()
    for name in ("cat", "dog"):
        (root / "train" / name).symlink_to(root / "store" / name)
    folder = scan_silo_folder(root)
    assert folder.train.counts(2) == (2, 3)


def test_a_dangling_link_is_refused(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    (root / "cat" / "gone.png").symlink_to(tmp_path / "nothing-here.png")
    message = _refusal(root)
    assert "gone.png" in message
    assert "dangling" in message


def test_a_header_claiming_a_huge_image_is_refused(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    bomb = root / "cat" / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))
    message = _refusal(root)
    assert "bomb.png" in message
    assert "pixels" in message
    with pytest.raises(DataError, match=r"bomb\.png"):
        read_image(bomb)


def test_a_claim_just_over_the_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    side = int(MAX_IMAGE_PIXELS**0.5) + 1  # under PIL's own limit, over ours
    bomb = tmp_path / "big.png"
    bomb.write_bytes(_png_header(side, side))
    with pytest.raises(DataError, match=f"{side}×{side}"):
        read_image(bomb)


def test_a_truncated_image_is_one_line_when_read(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    broken = root / "cat" / "0.png"
    broken.write_bytes(broken.read_bytes()[:60])
    spec = folder_input(channels=3, size=8)
    dataset = load_image_folder(root, train=True, input_spec=spec)
    index = [str(p) for p in dataset.paths].index(str(broken))
    with pytest.raises(DataError) as caught:
        dataset.image(index)
    assert "0.png" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_silo_start_refuses_a_hostile_folder_in_one_line(tmp_path: Path) -> None:
    root = _silo(tmp_path)
    os.mkfifo(root / "dog" / "pipe.png")
    result = CliRunner().invoke(
        app,
        [
            "silo",
            "start",
            "--superlink",
            "localhost:9092",
            "--silo",
            "silo-0",
            "--data",
            str(root),
            "--insecure",
            "--print-command",
        ],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "pipe.png" in lines[0]
