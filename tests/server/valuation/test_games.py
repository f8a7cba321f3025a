"""Shapley and leave-one-out maths on synthetic logits (no registry, no model)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tmc.common.errors import ConfigError
from tmc.server.valuation import (
    CompositionGame,
    exact_shapley,
    leave_one_out,
    make_player,
    sampled_shapley,
    shapley,
)


def _game(n: int, *, seed: int = 0, samples: int = 60, classes: int = 5) -> CompositionGame:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=samples)
    theta0 = rng.normal(size=(samples, classes))
    players = [
        make_player(f"silo-{k}", [rng.normal(scale=3.0, size=(samples, classes))], [1.0 + k])
        for k in range(n)
    ]
    return CompositionGame(theta0, labels, players)


def _shapley_by_permutations(game: CompositionGame) -> list[float]:
    """The definition: the mean marginal contribution over all n! orders."""
    n = len(game.players)
    totals = [0.0] * n
    for order in itertools.permutations(range(n)):
        members: list[int] = []
        for k in order:
            before = game.utility(members)
            members.append(k)
            totals[k] += game.utility(members) - before
    return [t / math.factorial(n) for t in totals]


def test_exact_shapley_equals_the_definition() -> None:
    game = _game(5)
    exact = shapley(game)
    assert exact.method == "exact"
    assert np.allclose(exact.values, _shapley_by_permutations(game), atol=1e-12)


def test_gray_code_utilities_equal_direct_composition() -> None:
    game = _game(6, seed=3)
    utilities = game.all_utilities()
    for mask in range(1 << 6):
        members = [k for k in range(6) if mask >> k & 1]
        assert utilities[mask] == pytest.approx(game.utility(members), abs=1e-12)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_efficiency_exact(n: int) -> None:
    game = _game(n, seed=n)
    values = shapley(game).values
    full, empty = game.utility(list(range(n))), game.utility([])
    assert sum(values) == pytest.approx(full - empty, abs=1e-12)


def test_efficiency_and_error_of_sampling() -> None:
    game = _game(6, seed=11)
    sampled = sampled_shapley(game, samples=400, seed=1)
    exact = exact_shapley(game.all_utilities(), 6)
    full, empty = game.utility(list(range(6))), game.utility([])
    assert sum(sampled.values) == pytest.approx(full - empty, abs=1e-12)  # telescopes
    assert all(e > 0 for e in sampled.standard_errors)
    # each estimate within 5 standard errors of the exact value
    for estimate, error, truth in zip(
        sampled.values, sampled.standard_errors, exact.values, strict=True
    ):
        assert abs(estimate - truth) <= 5 * error + 1e-9


def test_symmetry_identical_silos_get_the_same_value() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, size=80)
    theta0 = rng.normal(size=(80, 4))
    twin = rng.normal(scale=3.0, size=(80, 4))
    other = rng.normal(scale=3.0, size=(80, 4))
    game = CompositionGame(
        theta0,
        labels,
        [
            make_player("a", [twin], [1.0]),
            make_player("b", [twin.copy()], [1.0]),
            make_player("c", [other], [1.0]),
        ],
    )
    values = shapley(game).values
    assert values[0] == values[1]
    assert values[0] != values[2]


def test_leave_one_out_is_full_minus_the_rest() -> None:
    game = _game(4, seed=2)
    loo = leave_one_out(game)
    full = game.utility([0, 1, 2, 3])
    assert loo["silo-2"] == pytest.approx(full - game.utility([0, 1, 3]))


def test_beyond_the_exact_limit_sampling_is_used() -> None:
    result = shapley(_game(16, seed=4, samples=30), samples=5, seed=0)
    assert result.method == "permutations"
    assert result.samples == 5


def test_bad_games_are_refused() -> None:
    game = _game(2)
    with pytest.raises(ConfigError, match="once"):
        CompositionGame(game.theta0, game.labels, [game.players[0], game.players[0]])
    with pytest.raises(ConfigError, match="logits"):
        CompositionGame(game.theta0[:10], game.labels[:10], list(game.players))
    with pytest.raises(ConfigError, match="at least 2"):
        sampled_shapley(game, samples=1, seed=0)
