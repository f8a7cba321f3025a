"""The protocol between the ServerApp and the silos' ClientApps (Flower messages)."""

from common.federation.messages import (
    DELTA,
    EVALUATE,
    HELLO,
    INSTRUCTION,
    REPLY,
    THETA0,
    THETA0_ARRAYS,
    TRAIN,
    EvaluateInstruction,
    EvaluateResult,
    Hello,
    HelloRequest,
    TrainInstruction,
)
from common.federation.records import (
    arrays_to_tensors,
    component_from_content,
    component_to_content,
    pack,
    tensors_to_arrays,
    unpack,
)

__all__ = [
    "DELTA",
    "EVALUATE",
    "HELLO",
    "INSTRUCTION",
    "REPLY",
    "THETA0",
    "THETA0_ARRAYS",
    "TRAIN",
    "EvaluateInstruction",
    "EvaluateResult",
    "Hello",
    "HelloRequest",
    "TrainInstruction",
    "arrays_to_tensors",
    "component_from_content",
    "component_to_content",
    "pack",
    "tensors_to_arrays",
    "unpack",
]
