"""What one ``tmc serve`` is configured with (the command's options, validated)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tmc.common.schema import StrictModel

MIB = 1024 * 1024


class ServeSettings(StrictModel):
    """The registry served, who may ask, and the limits every request is held to."""

    registry: Path = Field(description="registry folder whose current version is served")
    credentials: Path = Field(description="bearer tokens (the admin API's credentials file)")
    max_batch: int = Field(64, ge=1, le=4096, description="inputs per request, at most")
    max_body_bytes: int = Field(
        16 * MIB, ge=1024, le=1024 * MIB, description="request body size, at most"
    )
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="width × height of one uploaded image, at most"
    )
    poll_s: float = Field(0.25, gt=0, le=5.0, description="how often the registry is polled")
    wait_s: float = Field(
        5.0, ge=0, le=60.0, description="how long a request waits for a model to answer from"
    )


__all__ = ["MIB", "ServeSettings"]
