"""Image folders written by tests: what a silo's own data look like on disk (import as
``tests.images``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# One colour per class, so that a small network can tell the classes apart.
CLASS_COLOURS = {
    "bird": (220, 40, 40),
    "cat": (40, 200, 40),
    "dog": (40, 40, 220),
    "fish": (220, 200, 40),
    "horse": (120, 60, 20),
}


def write_images(
    folder: Path, counts: dict[str, int], *, mode: str = "RGB", seed: int = 0, size: int = 8
) -> None:
    """``folder/<class>/<i>.png`` images: the class's colour plus noise (``mode`` "L" for
    grayscale scans), as a silo's own data would be laid out."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise = rng.integers(-30, 30, size=(size, size, 3))
            pixels = np.clip(np.array(CLASS_COLOURS[name]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").convert(mode).save(folder / name / f"{i}.png")


__all__ = ["CLASS_COLOURS", "write_images"]
