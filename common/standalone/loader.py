"""Load a model exported by ``tmc export`` and run it: Python's standard library and torch
only (torchvision for ResNets; Pillow, which torchvision needs anyway, for image files).

The file is safetensors: θ0 as ``theta0.<name>``, the composed Δ as ``delta.<name>`` and one
metadata key, ``tmc.model``, the JSON of what the model is (architecture, label names, input
spec, version, hashes). The model is the *tangent* one, f(x; θ0) + J_θ f(x; θ0)·Δ, evaluated
here with ``torch.func.jvp``. Loading θ0 + Δ into a plain network gives other (wrong) logits.

    python loader.py model.safetensors digit.png batch.npy    # JSON: classes and logits

or, from Python: ``model = load("model.safetensors")``,
``model.logits(model.preprocess(PIL.Image.open("digit.png")).unsqueeze(0))``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jvp

METADATA_KEY = "tmc.model"
FORMAT = "tmc-model"
FORMAT_VERSION = 1
THETA0_PREFIX = "theta0."
DELTA_PREFIX = "delta."
ARCHITECTURES = ("resnet18", "resnet50", "small-cnn")
_MAX_HEADER = 100 * 1024 * 1024
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class ModelFileError(ValueError):
    """The file is not a TMC model this loader can run; nothing was loaded."""


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class SmallCNN(nn.Module):
    """conv-bn-relu stem, two conv stages (the first one pooled), global pooling, linear head."""

    def __init__(self, *, num_classes: int, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        self.layer1 = nn.Sequential(
            *_conv_bn_relu(width, 2 * width), nn.MaxPool2d(kernel_size=2, ceil_mode=True)
        )
        self.layer2 = nn.Sequential(*_conv_bn_relu(2 * width, 4 * width))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_network(architecture: str, *, num_classes: int, in_channels: int) -> nn.Module:
    """The untrained network θ0 is loaded into."""
    if architecture == "small-cnn":
        return SmallCNN(num_classes=num_classes, in_channels=in_channels)
    if architecture in ("resnet18", "resnet50"):
        if in_channels != 3:
            raise ModelFileError(f"{architecture} takes 3 input channels, not {in_channels}")
        import torchvision  # only ResNets need it

        network: nn.Module = getattr(torchvision.models, architecture)(
            weights=None, num_classes=num_classes
        )
        return network
    raise ModelFileError(
        f"this loader cannot build architecture {architecture!r}; it knows "
        f"{', '.join(ARCHITECTURES)}"
    )


def _canonical_sha256(tensors: Mapping[str, tuple[str, tuple[int, ...], memoryview]]) -> str:
    # The project's tensor hash (name, dtype, shape, raw little-endian bytes, in name order),
    # recomputed from the file's bytes so that a corrupted or altered file is refused.
    digest = hashlib.sha256()
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        digest.update(f"{name}\0{dtype}\0{shape}\0".encode())
        digest.update(raw)
    return digest.hexdigest()


def _read_safetensors(data: bytearray) -> tuple[dict[str, Any], dict[str, torch.Tensor], str, str]:
    """(metadata, tensors, sha256 of the θ0 tensors, sha256 of the Δ tensors)."""
    if sys.byteorder != "little":
        raise ModelFileError("safetensors files are little-endian; this machine is not")
    if len(data) < 8:
        raise ModelFileError("not a TMC model: the file is shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > min(_MAX_HEADER, len(data) - 8):
        raise ModelFileError("not a TMC model: its header length does not fit the file")
    try:
        header = json.loads(bytes(data[8 : 8 + size]))
        info = json.loads(header.pop("__metadata__")[METADATA_KEY])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"not a TMC model (no {METADATA_KEY} metadata): {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelFileError(f"not a TMC model: its metadata is not of format {FORMAT!r}")
    if info.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"model format version {info.get('format_version')!r}; this loader reads version "
            f"{FORMAT_VERSION} (a newer tmc wrote it?)"
        )
    start, end, view = 8 + size, 0, memoryview(data)
    tensors: dict[str, torch.Tensor] = {}
    hashed: dict[str, dict[str, tuple[str, tuple[int, ...], memoryview]]] = {"t": {}, "d": {}}
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        dtype, shape = _DTYPES.get(entry["dtype"]), tuple(int(d) for d in entry["shape"])
        first, last = (int(v) for v in entry["data_offsets"])
        if dtype is None or any(d < 0 for d in shape):
            raise ModelFileError(f"tensor {name!r}: unsupported dtype or shape in the header")
        count = int(torch.Size(shape).numel())
        if first != end or last - first != count * dtype.itemsize or start + last > len(data):
            raise ModelFileError(f"tensor {name!r}: its bytes do not fit the file")
        end = last
        raw = view[start + first : start + last]
        if count == 0:
            tensor = torch.empty(shape, dtype=dtype)
        elif (start + first) % dtype.itemsize:  # misaligned: copy rather than view
            tensor = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
        else:
            tensor = torch.frombuffer(data, dtype=dtype, count=count, offset=start + first)
        tensors[name] = tensor.reshape(shape)
        for prefix, kind in ((THETA0_PREFIX, "t"), (DELTA_PREFIX, "d")):
            if name.startswith(prefix):
                dtype_name = str(dtype).removeprefix("torch.")
                hashed[kind][name.removeprefix(prefix)] = (dtype_name, shape, raw)
    if start + end != len(data):
        raise ModelFileError("the file has bytes after its last tensor: it was altered")
    return info, tensors, _canonical_sha256(hashed["t"]), _canonical_sha256(hashed["d"])


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {n.removeprefix(prefix): t for n, t in tensors.items() if n.startswith(prefix)}


class TMCModel:
    """θ0 in a plain network, Δ beside it; :meth:`logits` is the linearised model."""

    def __init__(self, info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.info = info
        self.classes: tuple[str, ...] = tuple(info["data"]["classes"])
        self.input: dict[str, Any] = dict(info["data"]["input"])
        self.tangent_names: tuple[str, ...] = tuple(info["tangent_names"])
        self.network = build_network(
            info["architecture"],
            num_classes=int(info["num_classes"]),
            in_channels=int(info["in_channels"]),
        ).eval()
        expected = self.network.state_dict()
        theta0 = _strip(tensors, THETA0_PREFIX)
        self.delta = _strip(tensors, DELTA_PREFIX)
        if len(theta0) + len(self.delta) != len(tensors):
            raise ModelFileError("the file holds tensors that are neither theta0.* nor delta.*")
        for name in sorted(set(expected) | set(theta0)):
            if name not in theta0 or name not in expected:
                raise ModelFileError(f"θ0 tensor {name!r} missing from the file or the network")
            if theta0[name].shape != expected[name].shape:
                raise ModelFileError(f"θ0 tensor {name!r} does not fit {info['architecture']}")
        params = dict(self.network.named_parameters())
        if sorted(self.delta) != sorted(self.tangent_names):
            raise ModelFileError("the Δ tensors are not the model's tangent parameters")
        for name, value in self.delta.items():
            if (
                name not in params
                or value.shape != params[name].shape
                or not value.is_floating_point()
            ):
                raise ModelFileError(f"Δ tensor {name!r} does not fit parameter {name!r}")
        if len(self.classes) != int(info["num_classes"]):
            raise ModelFileError("the file's class names do not match its number of classes")
        self.network.load_state_dict(theta0, strict=True)
        self.network.requires_grad_(False)

    @property
    def version(self) -> int:
        return int(self.info["version"])

    def preprocess(self, image: Any) -> torch.Tensor:
        """A PIL image as this model's input (C, H, W)."""
        return preprocess(image, self.input)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """f(x; θ0) + J_θ f(x; θ0)·Δ for a batch (N, C, H, W)."""
        self.network.eval()  # frozen normalisation statistics: the model is linear in Δ
        names = self.tangent_names
        state = {**dict(self.network.named_parameters()), **dict(self.network.named_buffers())}
        primals = tuple(state[n] for n in names)
        tangents = tuple(self.delta[n].to(state[n].dtype) for n in names)
        outputs = []
        for batch in x.to(torch.float32).split(batch_size):

            def f(*values: torch.Tensor, batch: torch.Tensor = batch) -> torch.Tensor:
                return functional_call(
                    self.network, {**state, **dict(zip(names, values, strict=True))}, (batch,)
                )

            out, jv = jvp(f, primals, tangents)[:2]
            outputs.append(out + jv)
        return torch.cat(outputs) if outputs else torch.empty(0, len(self.classes))


def load(source: str | Path | bytes) -> TMCModel:
    """Read and check a model file (a path or its bytes): format, tensor names and shapes,
    and θ0's and Δ's hashes against those the file records."""
    if isinstance(source, bytes | bytearray):
        data = bytearray(source)
    else:
        try:
            data = bytearray(Path(source).read_bytes())
        except OSError as exc:
            raise ModelFileError(f"cannot read {source}: {exc}") from exc
    try:
        info, tensors, theta0_sha, delta_sha = _read_safetensors(data)
        if theta0_sha != info["base_sha256"] or delta_sha != info["delta_sha256"]:
            raise ModelFileError("the file's tensors do not match its recorded hashes: corrupted")
        return TMCModel(info, tensors)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"not a TMC model: malformed header or metadata ({exc!r})") from exc


def preprocess(image: Any, spec: Mapping[str, Any]) -> torch.Tensor:
    """A PIL image as input (C, H, W), as the federation prepares its images: resized
    bilinearly, scaled to [0, 1], inverted if ``invert``, then (x - mean) / std per channel."""
    from PIL import Image

    channels, side = int(spec["channels"]), int(spec["size"])
    if channels not in (1, 3):
        raise ModelFileError(f"image files give 1 or 3 channels, not {channels}")
    converted = image.convert("L" if channels == 1 else "RGB")
    resized = converted.resize((side, side), Image.Resampling.BILINEAR)
    pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)
    tensor = pixels.reshape(side, side, channels).permute(2, 0, 1).to(torch.float32) / 255.0
    if spec.get("invert"):
        tensor = 1.0 - tensor
    if spec.get("mean") is not None and spec.get("std") is not None:
        mean = torch.tensor(spec["mean"], dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(spec["std"], dtype=torch.float32).view(-1, 1, 1)
        tensor = (tensor - mean) / std
    return tensor.contiguous()


def read_npy(path: Path) -> torch.Tensor:
    """A float ``.npy`` array (NumPy's format, read without NumPy) as a float32 tensor."""
    data = path.read_bytes()
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise ModelFileError(f"{path} is not a .npy file")
    width = 2 if data[6] == 1 else 4
    size = int.from_bytes(data[8 : 8 + width], "little")
    try:
        header = ast.literal_eval(data[8 + width : 8 + width + size].decode("latin1"))
        dtype = {"<f4": torch.float32, "<f8": torch.float64}[header["descr"]]
        shape = tuple(int(d) for d in header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: only float32/float64 .npy arrays are read ({exc})") from exc
    body = bytearray(data[8 + width + size :])
    if len(body) != torch.Size(shape).numel() * dtype.itemsize:
        raise ModelFileError(f"{path}: its data do not match its shape {shape}")
    flat = torch.frombuffer(body, dtype=dtype) if body else torch.empty(0, dtype=dtype)
    if header.get("fortran_order"):
        return flat.reshape(shape[::-1]).permute(*reversed(range(len(shape)))).to(torch.float32)
    return flat.reshape(shape).to(torch.float32)


def read_inputs(model: TMCModel, path: Path) -> torch.Tensor:
    """A batch (N, C, H, W) from a ``.npy`` (already preprocessed) or an image file."""
    if path.suffix == ".npy":
        batch = read_npy(path)
        batch = batch.unsqueeze(0) if batch.dim() == 3 else batch
    else:
        from PIL import Image

        try:
            with Image.open(path) as image:
                batch = model.preprocess(image).unsqueeze(0)
        except OSError as exc:
            raise ModelFileError(f"cannot read image {path}: {exc}") from exc
    shape = (int(model.input["channels"]), int(model.input["size"]), int(model.input["size"]))
    if batch.dim() != 4 or tuple(batch.shape[1:]) != shape:
        raise ModelFileError(f"{path}: shape {tuple(batch.shape)}, the model takes (N, *{shape})")
    return batch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify inputs with an exported TMC model.")
    parser.add_argument("model", type=Path, help="the file `tmc export` wrote")
    parser.add_argument(
        "inputs", type=Path, nargs="+", help="image files or .npy (C,H,W)/(N,C,H,W)"
    )
    args = parser.parse_args(argv)
    try:
        model = load(args.model)
        predictions = []
        for path in args.inputs:
            rows = model.logits(read_inputs(model, path))
            for index, row in enumerate(rows):
                label = int(row.argmax())
                name = str(path) if len(rows) == 1 else f"{path}[{index}]"
                predictions.append(
                    {
                        "input": name,
                        "class": model.classes[label],
                        "label": label,
                        "logits": row.tolist(),
                    }
                )
    except (ModelFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {"version": model.version, "classes": list(model.classes), "predictions": predictions}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
