"""A federation with differential privacy per silo: each silo calibrates its own noise and
the registry records every component's (ε, δ)."""

from __future__ import annotations

from collections.abc import Callable

from common.components import compose
from common.federation.config import FederationConfig
from common.models import MaterializedBase
from server.registry import Registry
from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.test_rounds import _run


def test_dp_epsilon_records_epsilon_per_component(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    config = make_config(rounds=1, epochs=2, dp_epsilon=4.0, dp_delta=1e-4, dp_clip=0.5)
    registry: Registry
    with _run(config, make_grid(config), digits_base) as registry:
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
