"""The admin API's ``Value``: the operator gets exactly the local values and a forget's
preview; any other token and any malformed request are refused, changing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.registries import digits_registry
from tests.server.admin.admin_helpers import ClientFactory, Pki, Tokens, snapshot
from tmc.cli import app
from tmc.common.errors import NotFoundError
from tmc.common.models import MaterializedBase
from tmc.server.admin import AdminServer, PermissionDeniedError, create_token
from tmc.server.admin.errors import RequestError
from tmc.server.registry import Registry
from tmc.server.valuation import Valuation, kept_valuations, preview_forget, value_version
from tmc.server.valuation.split import evaluation_split

SILOS = (("silo-0", (0, 1, 2)), ("silo-1", (3, 4, 5, 6)), ("silo-2", (7, 8, 9)))
# Set per call: when it was computed, and how many logits were not yet cached.
_PER_CALL = {"computed_at", "forward_passes"}


@pytest.fixture
def root(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    """A digits registry with real data settings (overrides the admin tests' registry, so
    the ``server`` and ``connect`` fixtures serve this one)."""
    return digits_registry(tmp_path / "registry", digits_base, silos=SILOS, rounds=2)


def _same(remote: Valuation, local: Valuation) -> None:
    assert remote.model_dump(exclude=_PER_CALL) == local.model_dump(exclude=_PER_CALL)


def test_operator_values_equal_the_local_ones(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    client = connect(tokens.operator)
    remote = client.value()
    first = client.value(version=1, seed=3)
    assert remote.forward_passes == 6  # two rounds of three silos, none cached yet
    with Registry.open(root, actor="test") as local:
        split = evaluation_split(local, "digits")
        _same(remote, value_version(local, split))
        _same(first, value_version(local, split, version=1, seed=3))
        classes = tuple(str(c) for c in range(10))
        expected = preview_forget(local, split, "silo-1", class_names=classes)
        assert {c.silo for c in local.list_components()} == {"silo-0", "silo-1", "silo-2"}
    assert remote.version == 2
    assert first.version == 1
    assert {s.silo for s in remote.silos} == {"silo-0", "silo-1", "silo-2"}
    assert client.preview_forget("silo-1") == expected
    # The values computed over the API are kept, as the local command keeps them.
    assert [v.version for v in kept_valuations(root, silo="silo-2")] == [1, 2]


def test_other_tokens_are_refused(root: Path, tokens: Tokens, connect: ClientFactory) -> None:
    viewer, _ = create_token(tokens.path, role="viewer", label="watch")
    before = snapshot(root)
    for token, shown in ((tokens.silo0, "silo-0-key"), (viewer, "watch")):
        client = connect(token)
        with pytest.raises(PermissionDeniedError, match=f"'{shown}' .* may not value"):
            client.value()
        with pytest.raises(PermissionDeniedError, match="operator only"):
            client.preview_forget("silo-0")
    assert snapshot(root) == before
    assert kept_valuations(root) == []


def test_bad_arguments_are_refused_with_a_reason(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    client = connect(tokens.operator)
    with pytest.raises(NotFoundError, match="version 7"):
        client.value(version=7)
    with pytest.raises(NotFoundError, match="silo 'silo-9' has no component in version 2"):
        client.preview_forget("silo-9")
    with pytest.raises(RequestError, match="samples must be between 2 and"):
        client.value(samples=1)
    with pytest.raises(RequestError, match="version must be >= 1"):
        client.value(version=0)
    with pytest.raises(RequestError, match="dataset 'mnist' is not one of digits"):
        client.value(dataset="mnist")
    with pytest.raises(RequestError, match="not a valid silo name"):
        client.preview_forget("../x")
    assert kept_valuations(root) == []


def test_value_command_over_the_api(
    root: Path, tokens: Tokens, server: AdminServer, tmp_path: Path, pki: Pki
) -> None:
    token_file = tmp_path / "operator.token"
    token_file.write_text(tokens.operator + "\n")
    token_file.chmod(0o600)
    remote = ["--server", f"127.0.0.1:{server.port}", "--ca-cert", str(pki.ca_cert)]
    remote += ["--token-file", str(token_file)]
    runner = CliRunner()
    shown = runner.invoke(app, ["registry", "value", *remote])
    assert shown.exit_code == 0, shown.output
    assert "version 2" in shown.output
    assert "silo-1" in shown.output
    as_json = runner.invoke(app, ["registry", "value", *remote, "--json"])
    assert as_json.exit_code == 0, as_json.output
    remote_values = Valuation.model_validate_json(as_json.stdout)
    local = runner.invoke(app, ["registry", "value", "--registry", str(root), "--json"])
    assert local.exit_code == 0, local.output
    _same(remote_values, Valuation.model_validate_json(local.stdout))
    preview = runner.invoke(app, ["registry", "value", *remote, "--what-if", "silo-0"])
    assert preview.exit_code == 0, preview.output
    assert "forgetting silo-0 removes 2 component(s) from version 2" in preview.output
    history = runner.invoke(app, ["registry", "value", *remote, "--history", "silo-0"])
    assert history.exit_code == 2
    assert "--history reads the kept values: use --registry DIR" in history.stderr
