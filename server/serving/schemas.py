"""The JSON bodies of the serve API: what a client sends and what it gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from tmc.common.data.inputs import InputSpec
from tmc.common.schema import StrictModel

Pixel = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictRequest(StrictModel):
    """Inputs already prepared as the model takes them: a batch ``(N, C, H, W)`` of
    float32 values (see ``GET /v1/model``'s ``input``); one input is a batch of one."""

    inputs: list[list[list[list[Pixel]]]] = Field(min_length=1)


class TopClass(StrictModel):
    class_name: str = Field(serialization_alias="class")
    label: int
    probability: float


class Prediction(StrictModel):
    """The answer for one input: its class, the most probable classes, and every class's
    probability and logit (in the order of ``GET /v1/model``'s ``classes``)."""

    input: str = Field(description="the uploaded file's name, or inputs[i]")
    class_name: str = Field(serialization_alias="class")
    label: int
    probability: float
    top: list[TopClass]
    probabilities: list[float]
    logits: list[float]


class PredictResponse(StrictModel):
    version: int = Field(description="the registry version that answered")
    component_ids: list[str] = Field(description="the components that version composes")
    predictions: list[Prediction]


class ModelInfo(StrictModel):
    version: int
    component_ids: list[str]
    components: int
    classes: list[str]
    input: InputSpec
    theta0_sha256: str = Field(description="hash of the base model θ0 every component extends")
    delta_sha256: str = Field(description="hash of this version's composed Δ")
    weighting: str
    round: int | None
    created_at: datetime


class Health(StrictModel):
    status: str = Field(description="ok: a version is served; starting: none loaded yet")
    version: int | None


class ErrorBody(StrictModel):
    error: str = Field(description="the kind of refusal, e.g. DataError")
    message: str = Field(description="what is wrong, in one line")


__all__ = [
    "ErrorBody",
    "Health",
    "ModelInfo",
    "Pixel",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "TopClass",
]
