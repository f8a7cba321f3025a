"""What the ServerApp and the ClientApps say to each other (one pydantic model per message).

Each model travels as JSON in a Flower ``ConfigRecord`` under the key ``"json"``; tensors
travel in ``ArrayRecord``s. Message types (``<action>.<sub-action>``, Flower 1.42):

* ``query.hello``  server → node: the federation's base, classes and input spec; who are
  you, what data do you hold, do you hold θ0 <sha256>?  → :class:`Hello`
* ``query.theta0`` server → node: θ0's arrays for an admitted node that lacks them →
  :class:`Hello`
* ``query.refused`` server → node: why the silo is not admitted (the node logs it) →
  :class:`RefusalAck`
* ``train.component`` server → node: train one component on an increment → Δ + meta
* ``evaluate`` server → node: score the composed Δ on your local test data → metrics
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tmc.common.components.component import SHA256_PATTERN, SILO_PATTERN
from tmc.common.components.encoding import Encoding
from tmc.common.data.inputs import DataSpec
from tmc.common.federation.admission import PartitionRecord
from tmc.common.schema import StrictModel
from tmc.common.training.config import TrainConfig

HELLO = "query.hello"
THETA0 = "query.theta0"
REFUSED = "query.refused"
TRAIN = "train.component"
EVALUATE = "evaluate"

SiloSourceKind = Literal["export", "image-folder", "simulation"]

MAX_EXAMPLES = 10**9
"""The most examples one silo may state for anything (a bound on every count in a reply,
so that no sum over silos can overflow or be swamped by one silo's claim)."""

JSON_KEY = "json"
"""Key of the JSON payload inside a message's ConfigRecord."""

INSTRUCTION = "instruction"
REPLY = "reply"
DELTA = "delta"
THETA0_ARRAYS = "theta0"


class HelloRequest(StrictModel):
    """Opening of a run: the server announces the base it will use and the federation's
    label space and input spec, which a silo needs to read its own data."""

    base_sha256: str = Field(pattern=SHA256_PATTERN)
    base_spec_json: str = Field(max_length=65_536)
    data: DataSpec


class Hello(StrictModel):
    """A node introduces its silo: identity, what data it holds (class names and counts,
    image channels, increments and their fingerprints, how they were cut), whether it has
    θ0, and the problems it sees itself. ``classes`` are the federation's labels of the
    classes it knows."""

    silo: str = Field(pattern=SILO_PATTERN)
    has_base: bool
    source: SiloSourceKind
    num_increments: int = Field(ge=0, le=1_000_000)
    increment_sizes: tuple[Annotated[int, Field(ge=0, le=MAX_EXAMPLES)], ...] = Field(
        max_length=1_000_000
    )
    increment_fingerprints: tuple[Annotated[str, Field(pattern=SHA256_PATTERN)], ...] = Field(
        max_length=1_000_000
    )
    classes: tuple[Annotated[int, Field(ge=0, le=100_000)], ...] = Field(max_length=100_000)
    class_names: tuple[Annotated[str, Field(max_length=128)], ...] = Field(max_length=100_000)
    class_counts: tuple[Annotated[int, Field(ge=0, le=MAX_EXAMPLES)], ...] = Field(
        max_length=100_000
    )
    channels: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        max_length=8, description="distinct, of the images"
    )
    image_size: int | None = Field(
        None, ge=1, le=65_536, description="set when stored preprocessed"
    )
    partition: PartitionRecord | None = None
    num_test_examples: int = Field(0, ge=0, le=MAX_EXAMPLES)
    device: str = Field(max_length=64)
    problems: tuple[Annotated[str, Field(max_length=4000)], ...] = Field((), max_length=64)


class Refusal(StrictModel):
    """The server does not admit this silo in this run, and says why."""

    silo: str = Field(pattern=SILO_PATTERN)
    reason: str = Field(max_length=4000)


class RefusalAck(StrictModel):
    silo: str = Field(pattern=SILO_PATTERN)


class TrainInstruction(StrictModel):
    """Train one tangent component of the announced base on one increment of local data."""

    round: int = Field(ge=1)
    increment: int = Field(ge=0)
    base_sha256: str = Field(pattern=SHA256_PATTERN)
    base_spec_json: str = Field(max_length=65_536)
    data: DataSpec
    train: TrainConfig
    encoding: Encoding = Field(description="how to upload Δ (the run config's upload-dtype)")


class EvaluateInstruction(StrictModel):
    """Score the composed model θ0 + Δ (Δ sent alongside) on the silo's local test data."""

    round: int = Field(ge=0)
    base_sha256: str = Field(pattern=SHA256_PATTERN)
    base_spec_json: str = Field(max_length=65_536)
    data: DataSpec
    version: int = Field(ge=0)


class EvaluateResult(StrictModel):
    """A silo's score of the composed model on its local test data. The server also checks
    ``silo`` against the node that answered and ``num_examples`` against the test examples
    the silo declared at hello, since they weigh the federated accuracy."""

    silo: str = Field(pattern=SILO_PATTERN)
    accuracy: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    num_examples: int = Field(ge=0, le=MAX_EXAMPLES)
