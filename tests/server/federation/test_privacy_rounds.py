"""A federation with differential privacy per silo: each silo calibrates its own noise and
the registry records every component's (ε, δ); components that do not state the run's
privacy are refused, and a private registry is not continued without DP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flwr.app import Message

from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.rounds_helpers import run_rounds
from tmc.common.components import compose
from tmc.common.federation.config import FederationConfig
from tmc.common.federation.messages import REPLY
from tmc.common.models import MaterializedBase
from tmc.server.federation.app import run_federation
from tmc.server.registry import PrivacyFloor, Registry, RegistryMismatchError


def test_dp_epsilon_records_epsilon_per_component(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    config = make_config(rounds=1, epochs=2, dp_epsilon=4.0, dp_delta=1e-4, dp_clip=0.5)
    registry: Registry
    with run_rounds(config, make_grid(config), digits_base) as registry:
        records = registry.list_components()
        assert len(records) == 3
        for record in records:
            privacy = record.privacy
            assert privacy is not None
            assert 3.9 <= privacy.epsilon <= 4.0
            assert privacy.delta == 1e-4
            assert privacy.clip == 0.5
            assert privacy.sampling_rate == 32 / record.num_examples  # the silo's own N
            assert registry.get_component(record.id).meta.privacy == privacy
        parts = [registry.get_component(r.id) for r in records]
        assert registry.composed_delta().equal(compose(parts))
        assert registry.verify().ok


def test_silos_short_of_the_runs_privacy_are_refused_and_the_registry_stays_private(
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
    (summary,) = run_federation(make_grid(config, tamper=tamper), config, run_id=5)
    assert summary.accepted_silos == ("silo-0",)
    reasons = {r.silo: r.reason for r in summary.rejected}
    assert "states no privacy: the silo trained without DP" in reasons["silo-1"]
    assert reasons["silo-2"].endswith("its privacy claim does not add up")
    with Registry.open(config.registry_path) as registry:
        assert registry.settings.privacy == PrivacyFloor(epsilon=4.0, delta=1e-5)
        assert registry.verify().ok

    plain = make_config(rounds=1, epochs=1)  # the same registry, without DP
    with pytest.raises(RegistryMismatchError, match="requires DP-SGD with ε ≤ 4"):
        run_federation(make_grid(plain), plain, run_id=6)


def test_a_privacy_claim_that_does_not_fit_the_silos_data_and_the_run_is_refused(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
) -> None:
    """q and steps follow from the component's N and the run's batch size and epochs: a
    silo stating a smaller q or fewer steps (a smaller ε for the same σ) is refused."""

    def tamper(node: int, reply: Message) -> Message:
        if node == 1000 or reply.metadata.message_type != "train.component":
            return reply
        record = reply.content.config_records[REPLY]
        meta = json.loads(str(record["json"]))
        if node == 1001:
            meta["privacy"]["steps"] -= 1
        else:
            meta["privacy"]["sampling_rate"] /= 2
        record["json"] = json.dumps(meta)
        return reply

    config = make_config(rounds=1, epochs=1, dp_noise_multiplier=1.0)
    (summary,) = run_federation(make_grid(config, tamper=tamper), config, run_id=5)
    assert summary.accepted_silos == ("silo-0",)
    reasons = {r.silo: r.reason for r in summary.rejected}
    for silo in ("silo-1", "silo-2"):
        assert "batch-size 32 for 1 epochs give q = " in reasons[silo], reasons
        assert reasons[silo].endswith("its privacy claim does not describe this run")
