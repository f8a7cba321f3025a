"""``forget(expected=...)``: a forget that names what it was shown it would remove is refused,
with nothing changed, when the registry would remove something else."""

from __future__ import annotations

import pytest

from tests.server.registry.registry_helpers import make_component
from tmc.server.registry import ForgetChangedError, Registry


def _state(registry: Registry) -> tuple[object, ...]:
    return (
        [(c.id, c.status) for c in registry.list_components(status="all")],
        [v.number for v in registry.versions()],
        [e.seq for e in registry.audit_log()],
        registry.tombstones(),
    )


def test_a_forget_that_would_remove_other_components_changes_nothing(
    registry: Registry,
) -> None:
    shown = [registry.add(make_component("silo-a", s, increment=s)).id for s in (1, 2)]
    registry.add(make_component("silo-b", 3))
    registry.commit_version()
    late = registry.add(make_component("silo-a", 4, increment=3)).id  # after the page
    before = _state(registry)
    with pytest.raises(ForgetChangedError, match="would now remove 3 component"):
        registry.forget(silo="silo-a", actor="operator", expected=shown)
    assert _state(registry) == before
    assert registry.tombstone("silo-a") is None
    result = registry.forget(silo="silo-a", actor="operator", expected=[*shown, late])
    assert set(result.removed) == {*shown, late}


def test_a_component_forget_checks_its_expectation_too(registry: Registry) -> None:
    kept = registry.add(make_component("silo-a", 1)).id
    registry.commit_version()
    registry.forget(component_id=kept, actor="operator")
    before = _state(registry)
    with pytest.raises(ForgetChangedError):
        registry.forget(component_id=kept, actor="operator", expected=[kept])  # already gone
    assert _state(registry) == before
