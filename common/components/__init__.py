"""Components (Δ + metadata), their algebra, validation, storage format and composition."""

from common.components.codec import (
    component_from_bytes,
    component_to_bytes,
    load_component,
    save_component,
)
from common.components.component import Component, ComponentMeta, component_id
from common.components.compose import ExactSum, Weighting, component_weight, compose
from common.components.delta import Delta, weighted_sum
from common.components.validation import TangentSchema, check_delta_schema, validate_component

__all__ = [
    "Component",
    "ComponentMeta",
    "Delta",
    "ExactSum",
    "TangentSchema",
    "Weighting",
    "check_delta_schema",
    "component_from_bytes",
    "component_id",
    "component_to_bytes",
    "component_weight",
    "compose",
    "load_component",
    "save_component",
    "validate_component",
    "weighted_sum",
]
