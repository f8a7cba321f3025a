"""DP components in the registry: their accounting is stored, listed, served and shown;
claims that do not add up are refused; a private registry's floor holds for good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.server.registry.registry_helpers import make_component
from tmc.cli import app
from tmc.common.components import Component, PrivacyMeta
from tmc.common.training import PrivacyConfig
from tmc.common.training.accounting import ACCOUNTANT, accountant_version, epsilon
from tmc.server.admin.convert import component_from_pb, component_to_pb
from tmc.server.registry import (
    BaseRecord,
    PrivacyFloor,
    PrivacyFloorError,
    Registry,
    RegistryMismatchError,
    privacy_refusal,
)

PRIVACY = PrivacyMeta(
    epsilon=2.5,
    delta=1e-5,
    noise_multiplier=3.25,
    clip=1.0,
    steps=120,
    sampling_rate=0.125,
    accountant="dp-accounting RDP",
    accountant_version="0.6.0",
)


def _private(silo: str, seed: int) -> Component:
    plain = make_component(silo, seed)
    meta = plain.meta.model_copy(update={"privacy": PRIVACY})
    return Component(plain.delta, meta)


def test_privacy_round_trips_through_the_registry(registry: Registry) -> None:
    private, plain = _private("silo-a", 1), make_component("silo-b", 2)
    assert registry.add(private).privacy == PRIVACY
    assert registry.add(plain).privacy is None
    by_id = {r.id: r for r in registry.list_components()}
    assert by_id[private.id].privacy == PRIVACY
    assert by_id[plain.id].privacy is None
    assert registry.get_component(private.id).meta.privacy == PRIVACY
    assert registry.get_component(private.id).id == private.id
    assert registry.get_component(plain.id).id == plain.id
    registry.commit_version()
    assert registry.verify().ok
    for record in by_id.values():  # the admin API carries it both ways, losslessly
        assert component_from_pb(component_to_pb(record)) == record


def test_privacy_persists_and_is_listed(root: Path, base: BaseRecord) -> None:
    private, plain = _private("silo-a", 1), make_component("silo-b", 2)
    with Registry.create(root, base=base, store="sqlite") as registry:
        registry.add(private)
        registry.add(plain)
    with Registry.open(root) as registry:
        stored = {r.id: r.privacy for r in registry.list_components()}
    assert stored == {private.id: PRIVACY, plain.id: None}
    runner = CliRunner()
    result = runner.invoke(app, ["registry", "list", "--registry", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["silo"]: r for r in json.loads(result.stdout)}
    assert rows["silo-a"]["epsilon"] == 2.5
    assert rows["silo-a"]["privacy"] == PRIVACY.model_dump(mode="json")
    assert rows["silo-b"]["epsilon"] is None
    assert rows["silo-b"]["privacy"] is None
    table = runner.invoke(
        app, ["registry", "list", "--registry", str(root)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "ε" in table.output
    assert "2.5 (δ 1e-05)" in table.output


# -- the privacy a registry requires, and claims that must add up ---------------------------


N = 200
"""Examples of the components whose claims these tests state (q = 0.15: batches of 30)."""


def _stated(sigma: float = 2.0, *, delta: float = 1e-5) -> PrivacyMeta:
    q, steps = 0.15, 70
    return PrivacyMeta(
        epsilon=epsilon(sigma, q, steps, delta),
        delta=delta,
        noise_multiplier=sigma,
        clip=1.0,
        steps=steps,
        sampling_rate=q,
        accountant=ACCOUNTANT,
        accountant_version=accountant_version(),
    )


def _with(privacy: PrivacyMeta | None, silo: str = "silo-a", seed: int = 1) -> Component:
    plain = make_component(silo, seed)
    return Component(plain.delta, plain.meta.model_copy(update={"privacy": privacy}))


def test_nothing_required_accepts_components_with_or_without_a_sound_claim() -> None:
    assert privacy_refusal(None, None, num_examples=N) is None
    assert privacy_refusal(None, _stated(), num_examples=N) is None


def test_a_floor_refuses_components_that_do_not_meet_it() -> None:
    stated = _stated(2.0)  # ε ≈ 3.3
    assert (
        privacy_refusal(PrivacyFloor(epsilon=stated.epsilon, delta=1e-5), stated, num_examples=N)
        is None
    )
    missing = privacy_refusal(PrivacyFloor(epsilon=3.0, delta=1e-5), None, num_examples=N)
    assert missing is not None
    assert missing.startswith("DP-SGD with ε ≤ 3, δ ≤ 1e-05 is required")
    assert "states no privacy: the silo trained without DP" in missing
    above = privacy_refusal(PrivacyFloor(epsilon=1.0, delta=1e-5), stated, num_examples=N)
    assert above == f"the component states ε = {stated.epsilon:.4g}, above the required 1"
    loose = privacy_refusal(
        PrivacyFloor(epsilon=100.0, delta=1e-5), _stated(2.0, delta=1e-4), num_examples=N
    )
    assert loose == "the component states δ = 0.0001, above the required 1e-05"
    weak = privacy_refusal(PrivacyFloor(noise_multiplier=3.0, delta=1e-5), stated, num_examples=N)
    assert weak == "the component states σ = 2, below the required 3"


def test_a_claim_that_does_not_add_up_is_refused_even_when_nothing_is_required() -> None:
    sound = _stated(2.0)
    boasting = sound.model_copy(update={"epsilon": sound.epsilon / 2})
    reason = privacy_refusal(None, boasting, num_examples=N)
    assert reason is not None
    assert reason.endswith("its privacy claim does not add up")
    assert f"give ε = {sound.epsilon:.4g}" in reason
    modest = sound.model_copy(update={"epsilon": sound.epsilon * 2})  # looser: still true
    assert privacy_refusal(None, modest, num_examples=N) is None


def test_claims_that_give_no_guarantee_or_break_the_accountant_are_refused() -> None:
    sound = _stated(2.0)
    vanishing = sound.model_copy(update={"sampling_rate": 1e-9, "steps": 1, "epsilon": 1e-6})
    reason = privacy_refusal(None, vanishing, num_examples=N)
    assert reason is not None
    assert "an expected batch of 2e-07 examples (below one)" in reason
    one_step = sound.model_copy(update={"steps": 1, "epsilon": 1e-3})
    reason = privacy_refusal(None, one_step, num_examples=N)
    assert reason is not None
    assert "0.15 expected passes over its data" in reason
    tiny_sigma = sound.model_copy(update={"noise_multiplier": 1e-300})
    reason = privacy_refusal(None, tiny_sigma, num_examples=N)
    assert reason is not None
    assert "noise multiplier σ = 1e-300, below the smallest" in reason
    assert privacy_refusal(None, sound, num_examples=N) is None


def test_floors_compare_by_strictness() -> None:
    held = PrivacyFloor(epsilon=3.0, delta=1e-5)
    assert PrivacyFloor(epsilon=1.0, delta=1e-6).looser_than(held) == []
    assert PrivacyFloor(epsilon=8.0, delta=1e-4).looser_than(held) == [
        "dp-epsilon 8 vs at most 3",
        "dp-delta 0.0001 vs at most 1e-05",
    ]
    assert PrivacyFloor(noise_multiplier=2.0, delta=1e-5).looser_than(held) == [
        "dp-epsilon unset vs at most 3"
    ]
    assert PrivacyFloor.of(None) is None
    assert PrivacyFloor.of(PrivacyConfig(target_epsilon=3.0)) == held
    with pytest.raises(ValidationError, match="needs an epsilon or a noise multiplier"):
        PrivacyFloor(delta=1e-5)


def test_a_private_registry_refuses_what_falls_short_and_keeps_its_floor(
    root: Path, base: BaseRecord
) -> None:
    floor = PrivacyFloor(epsilon=4.0, delta=1e-5)
    with Registry.create(root, base=base, privacy=floor) as registry:
        assert registry.add(_with(_stated(2.0))).privacy is not None  # ε ≈ 3.3
        for stated, reason in (
            (None, "states no privacy"),
            (_stated(1.0), "above the required 4"),
            (_stated(2.0).model_copy(update={"epsilon": 1.0}), "does not add up"),
        ):
            with pytest.raises(PrivacyFloorError, match=reason):
                registry.add(_with(stated, "silo-b", 2))
        assert [r.silo for r in registry.list_components(status="all")] == ["silo-a"]
    with Registry.open(root) as registry:
        assert registry.settings.privacy == floor  # for good, on disk
    with pytest.raises(RegistryMismatchError, match=r"requires DP-SGD with ε ≤ 4.*no DP settings"):
        Registry.open_or_create(root, base=base)
    with pytest.raises(RegistryMismatchError, match="dp-epsilon 8 vs at most 4"):
        Registry.open_or_create(root, base=base, privacy=PrivacyFloor(epsilon=8.0, delta=1e-5))
    stricter = PrivacyFloor(epsilon=2.0, delta=1e-6)
    with Registry.open_or_create(root, base=base, privacy=stricter) as registry:
        assert registry.settings.privacy == floor  # a stricter run does not move the floor
