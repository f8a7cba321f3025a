"""What the ServerApp and the ClientApps say to each other (one pydantic model per message).

Each model travels as JSON in a Flower ``ConfigRecord`` under the key ``"json"``; tensors
travel in ``ArrayRecord``s. Message types (``<action>.<sub-action>``, Flower 1.42):

* ``query.hello``  server → node: who are you, do you hold θ0 <sha256>?  → :class:`Hello`
* ``query.theta0`` server → node: θ0's arrays for a node that lacks them → :class:`Hello`
* ``train.component`` server → node: train one component on an increment → Δ + meta
* ``evaluate`` server → node: score the composed Δ on your local test data → metrics
"""

from __future__ import annotations

from pydantic import Field

from common.components.component import SHA256_PATTERN, SILO_PATTERN
from common.schema import StrictModel
from common.training.config import TrainConfig

HELLO = "query.hello"
THETA0 = "query.theta0"
TRAIN = "train.component"
EVALUATE = "evaluate"

JSON_KEY = "json"
"""Key of the JSON payload inside a message's ConfigRecord."""

INSTRUCTION = "instruction"
REPLY = "reply"
DELTA = "delta"
THETA0_ARRAYS = "theta0"


class HelloRequest(StrictModel):
    """Opening of a run: the server announces the base it will use."""

    base_sha256: str = Field(pattern=SHA256_PATTERN)
    base_spec_json: str = Field(max_length=65_536)


class Hello(StrictModel):
    """A node introduces its silo: identity, what data it holds, whether it has θ0."""

    silo: str = Field(pattern=SILO_PATTERN)
    has_base: bool
    num_increments: int = Field(ge=0, le=1_000_000)
    increment_sizes: tuple[int, ...] = Field(max_length=1_000_000)
    classes: tuple[int, ...] = Field(max_length=100_000)
    num_test_examples: int = Field(0, ge=0)
    device: str = Field(max_length=64)


class TrainInstruction(StrictModel):
    """Train one tangent component of the announced base on one increment of local data."""

    round: int = Field(ge=1)
    increment: int = Field(ge=0)
    base_sha256: str = Field(pattern=SHA256_PATTERN)
    base_spec_json: str = Field(max_length=65_536)
    train: TrainConfig


class EvaluateInstruction(StrictModel):
    """Score the composed model θ0 + Δ (Δ sent alongside) on the silo's local test data."""

    round: int = Field(ge=0)
    base_sha256: str = Field(pattern=SHA256_PATTERN)
    base_spec_json: str = Field(max_length=65_536)
    version: int = Field(ge=0)


class EvaluateResult(StrictModel):
    silo: str = Field(pattern=SILO_PATTERN)
    accuracy: float = Field(ge=0.0, le=1.0)
    num_examples: int = Field(ge=0)
