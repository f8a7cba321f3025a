"""A component's privacy record: left out of the id when absent, checked when present."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tmc.common.components import (
    Component,
    ComponentMeta,
    Delta,
    PrivacyMeta,
    load_component,
    save_component,
)
from tmc.common.errors import ProtocolError
from tmc.common.federation import REPLY, component_from_content, component_to_content

PRIVACY = PrivacyMeta(
    epsilon=3.0,
    delta=1e-5,
    noise_multiplier=1.7,
    clip=1.0,
    steps=270,
    sampling_rate=0.11,
    accountant="dp-accounting RDP",
    accountant_version="0.6.0",
)


def _component(privacy: PrivacyMeta | None = None) -> Component:
    generator = torch.Generator().manual_seed(0)
    delta = Delta(
        {
            "layer.bias": torch.randn(4, generator=generator),
            "layer.weight": torch.randn(4, 3, generator=generator),
        }
    )
    meta = ComponentMeta(
        base_sha256="ab" * 32,
        silo="silo-a",
        round=1,
        num_examples=17,
        classes=(1, 3),
        metrics={"loss": 0.5},
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        privacy=privacy,
    )
    return Component(delta, meta)


def test_components_without_dp_keep_their_ids() -> None:
    plain = _component()
    assert "privacy" not in json.loads(plain.meta.canonical_json())
    # the id this very component had before components could carry a privacy record
    assert plain.id == "1e6cd32f4fc929fa1296efe0aaceefe6ee2d41b723b8a45ed39e50d87533b3ad"


def test_a_dp_component_is_hashed_and_stored_with_its_accounting(tmp_path: Path) -> None:
    private = _component(PRIVACY)
    assert private.id != _component().id
    assert json.loads(private.meta.canonical_json())["privacy"]["epsilon"] == 3.0
    path = tmp_path / "c.safetensors"
    save_component(private, path)
    loaded = load_component(path)
    assert loaded.id == private.id
    assert loaded.meta.privacy == PRIVACY


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epsilon", 0.0),
        ("epsilon", -1.0),
        ("epsilon", math.inf),
        ("epsilon", math.nan),
        ("delta", 0.0),
        ("delta", 1.0),
        ("delta", math.nan),
        ("noise_multiplier", math.inf),
        ("clip", 0.0),
        ("sampling_rate", 1.0),
        ("steps", 0),
        ("mechanism", "laplace"),
    ],
)
def test_malformed_privacy_claims_are_refused(field: str, value: object) -> None:
    claim = {**PRIVACY.model_dump(), field: value}
    with pytest.raises(ValidationError):
        PrivacyMeta.model_validate(claim)
    # as the server reads a silo's reply: the whole component is refused
    content = component_to_content(_component(PRIVACY))
    meta = json.loads(str(content.config_records[REPLY]["json"]))
    meta["privacy"][field] = value
    content.config_records[REPLY]["json"] = json.dumps(meta)
    with pytest.raises(ProtocolError, match="privacy"):
        component_from_content(content, shapes={"layer.bias": (4,), "layer.weight": (4, 3)})
