"""Components (Δ + metadata), their algebra, validation, storage format and composition."""

from tmc.common.components.codec import (
    component_from_bytes,
    component_to_bytes,
    load_component,
    save_component,
)
from tmc.common.components.component import Component, ComponentMeta, component_id
from tmc.common.components.compose import ExactSum, Weighting, component_weight, compose
from tmc.common.components.delta import Delta, weighted_sum
from tmc.common.components.encoding import (
    ENCODINGS,
    UNENCODED,
    Encoding,
    decode,
    dense_bytes,
    encode,
    payload_bytes,
    payload_layout,
)
from tmc.common.components.privacy import PrivacyMeta
from tmc.common.components.validation import TangentSchema, check_delta_schema, validate_component

__all__ = [
    "ENCODINGS",
    "UNENCODED",
    "Component",
    "ComponentMeta",
    "Delta",
    "Encoding",
    "ExactSum",
    "PrivacyMeta",
    "TangentSchema",
    "Weighting",
    "check_delta_schema",
    "component_from_bytes",
    "component_id",
    "component_to_bytes",
    "component_weight",
    "compose",
    "decode",
    "dense_bytes",
    "encode",
    "load_component",
    "payload_bytes",
    "payload_layout",
    "save_component",
    "validate_component",
    "weighted_sum",
]
