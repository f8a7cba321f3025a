"""The base class of every pydantic model that crosses a boundary (config, wire, disk)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Immutable, and unknown fields are an error rather than silently dropped.

    A typo in a config key (``lerning_rate``) must fail loudly, not train with the default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
