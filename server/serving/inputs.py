"""A request's inputs as the model's batch: prepared arrays (JSON) or image files.

Image files are prepared exactly as ``tmc predict`` prepares them (``prepare_image``);
arrays must already be. Both are checked against the federation's input spec, so a
wrong shape is a DataError naming the shape expected, never a failure inside the model.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

from tmc.common.data.inputs import InputSpec, prepare_image
from tmc.common.errors import DataError
from tmc.server.serving.errors import RequestTooLargeError
from tmc.server.serving.schemas import PredictRequest

IMAGE_FORMATS = ("PNG", "JPEG")


def check_batch(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise RequestTooLargeError(
            f"the request holds {count} inputs; this server takes at most {max_batch} per "
            "request (--max-batch): split the batch"
        )


def array_batch(request: PredictRequest, spec: InputSpec, max_batch: int) -> torch.Tensor:
    """The ``(N, C, H, W)`` float32 batch of a JSON request."""
    check_batch(len(request.inputs), max_batch)
    try:
        array = np.asarray(request.inputs, dtype=np.float32)
    except ValueError:
        array = None  # ragged: the items differ in shape
    expected = f"(N, {', '.join(map(str, spec.shape))})"
    if array is None or array.ndim != 4 or tuple(array.shape[1:]) != spec.shape:
        got = "ragged nested lists" if array is None else f"shape {tuple(array.shape)}"
        raise DataError(
            f"inputs has {got}; the model takes a batch {expected} of prepared inputs "
            f"({spec.describe()}); send image files as multipart form data instead"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def image_tensor(name: str, data: bytes, spec: InputSpec, max_pixels: int) -> torch.Tensor:
    """One uploaded PNG or JPEG as the model's input (``spec.shape``)."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; PIL's bomb warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise RequestTooLargeError(
                    f"{name} is {width}×{height} pixels; this server decodes at most "
                    f"{max_pixels} pixels per image"
                )
            image.load()
    except Image.UnidentifiedImageError as exc:
        raise DataError(
            f"{name} is not a PNG or JPEG image; send images as PNG or JPEG files, or "
            "prepared arrays as JSON"
        ) from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name} cannot be decoded as a PNG or JPEG image: {exc}") from exc
    return prepare_image(image, spec)


def image_batch(
    files: list[tuple[str, bytes]], spec: InputSpec, *, max_batch: int, max_pixels: int
) -> torch.Tensor:
    """The batch of uploaded images, in the order they were sent."""
    check_batch(len(files), max_batch)
    if not files:
        raise DataError("no image: send one or more files in the form field 'files'")
    return torch.stack([image_tensor(name, data, spec, max_pixels) for name, data in files])


__all__ = ["IMAGE_FORMATS", "array_batch", "check_batch", "image_batch", "image_tensor"]
