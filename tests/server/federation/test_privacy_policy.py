"""The server's check of a component's stated privacy: the run's DP requirement, and a
claim that adds up under the accountant (pure function, then through a round)."""

from __future__ import annotations

import json
from collections.abc import Callable

from flwr.app import Message

from common.components import PrivacyMeta
from common.federation.config import FederationConfig
from common.federation.messages import REPLY
from common.models import MaterializedBase
from common.training import PrivacyConfig
from common.training.accounting import ACCOUNTANT, accountant_version, epsilon
from server.federation import privacy_refusal
from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.test_rounds import _run


def _stated(
    sigma: float = 2.0, *, q: float = 0.15, steps: int = 70, delta: float = 1e-5
) -> PrivacyMeta:
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


def test_a_run_without_dp_accepts_components_with_or_without_a_sound_claim() -> None:
    assert privacy_refusal(None, None) is None
    assert privacy_refusal(None, _stated()) is None


def test_a_private_run_refuses_components_that_do_not_meet_it() -> None:
    stated = _stated(2.0)  # ε ≈ 3.3
    asked = PrivacyConfig(target_epsilon=stated.epsilon)
    assert privacy_refusal(asked, stated) is None
    missing = privacy_refusal(asked, None)
    assert missing is not None
    assert "states no privacy: the silo trained without DP" in missing
    above = privacy_refusal(PrivacyConfig(target_epsilon=1.0), stated)
    assert above == f"the component states ε = {stated.epsilon:.4g}, above the run's dp-epsilon 1"
    loose = _stated(2.0, delta=1e-4)
    assert "δ = 0.0001, above the run's dp-delta 1e-05" in str(
        privacy_refusal(PrivacyConfig(target_epsilon=100.0), loose)
    )
    weak = privacy_refusal(PrivacyConfig(noise_multiplier=3.0), stated)
    assert weak == "the component states σ = 2, below the run's dp-noise-multiplier 3"


def test_a_claim_that_does_not_add_up_is_refused_even_without_dp_asked() -> None:
    sound = _stated(2.0)
    boasting = sound.model_copy(update={"epsilon": sound.epsilon / 2})
    reason = privacy_refusal(None, boasting)
    assert reason is not None
    assert reason.endswith("its privacy claim does not add up")
    assert f"give ε = {sound.epsilon:.4g}" in reason
    modest = sound.model_copy(update={"epsilon": sound.epsilon * 2})  # looser: still true
    assert privacy_refusal(None, modest) is None


def test_a_round_refuses_silos_whose_privacy_is_not_the_runs(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    def tamper(node: int, reply: Message) -> Message:
        if node == 1000 or reply.metadata.message_type != "train.component":
            return reply
        record = reply.content.config_records[REPLY]
        meta = json.loads(str(record["json"]))
        if node == 1001:  # as a client that ignores the run's DP settings would send
            del meta["privacy"]
        else:  # claims half the ε its parameters give
            meta["privacy"]["epsilon"] /= 2
        record["json"] = json.dumps(meta)
        return reply

    config = make_config(rounds=1, epochs=1, dp_epsilon=4.0)
    with _run(config, make_grid(config, tamper=tamper), digits_base) as registry:
        assert {r.silo for r in registry.list_components()} == {"silo-0"}
        reasons = {
            e.silo: str(e.details["reason"]) for e in registry.audit_log() if e.action == "reject"
        }
        assert "states no privacy: the silo trained without DP" in reasons["silo-1"]
        assert reasons["silo-2"].endswith("its privacy claim does not add up")
        assert registry.verify().ok
