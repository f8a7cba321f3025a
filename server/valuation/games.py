"""What each silo is worth: leave-one-out and Shapley values of a composition game.

The players are silos; a coalition S is the composition of the components of the silos in S,
each weighted as the version weights it (wᵢ = 1, or its example count), renormalised over S:

    logits(S) = f(x; θ0) + Σ_{i ∈ S} wᵢ (J·Δᵢ)(x) / Σ_{i ∈ S} wᵢ,     u(S) = accuracy(logits(S)).

Because the model is linear in Δ this is exactly the model the registry would compose from S
(see :mod:`tmc.server.valuation.logits`), so u is evaluated on cached arrays without a
forward pass. u(∅) is θ0's accuracy. Shapley values (Shapley 1953; as data values: Ghorbani &
Zou, "Data Shapley", ICML 2019) are exact by enumeration of the 2ⁿ coalitions up to
``EXACT_LIMIT`` silos, visited in Gray-code order so each step adds or removes one silo's
arrays; beyond that, by averaging marginal contributions over random permutations
(Castro et al. 2009), with the standard error of that mean. Both satisfy efficiency exactly:
the values sum to u(all) − u(∅).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tmc.common.errors import ConfigError

EXACT_LIMIT = 15
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Player:
    """A silo in the game: Σ wᵢ (J·Δᵢ) over its components, and Σ wᵢ."""

    name: str
    weighted_tangent: Array
    weight: float


def make_player(name: str, tangents: Sequence[Array], weights: Sequence[float]) -> Player:
    if not tangents or len(tangents) != len(weights):
        raise ConfigError(f"silo {name!r}: one weight per component, at least one component")
    total = np.zeros_like(tangents[0])
    for tangent, weight in zip(tangents, weights, strict=True):
        total += weight * tangent
    return Player(name=name, weighted_tangent=total, weight=float(sum(weights)))


class CompositionGame:
    """u(S) for coalitions of silos, from θ0's logits and each player's arrays."""

    def __init__(self, theta0: Array, labels: npt.NDArray[np.int64], players: Sequence[Player]):
        if len({p.name for p in players}) != len(players):
            raise ConfigError("each silo may appear once in a valuation")
        for player in players:
            if player.weighted_tangent.shape != theta0.shape:
                raise ConfigError(
                    f"silo {player.name!r}: logits {player.weighted_tangent.shape}, "
                    f"θ0's {theta0.shape}"
                )
        self.theta0 = theta0
        self.labels = labels
        self.players = tuple(players)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.players)

    def logits(self, coalition: Sequence[int]) -> Array:
        numerator = np.zeros_like(self.theta0)
        weight = 0.0
        for index in coalition:
            numerator += self.players[index].weighted_tangent
            weight += self.players[index].weight
        return self.theta0 if weight == 0 else self.theta0 + numerator / weight

    def accuracy_of(self, logits: Array) -> float:
        return float(np.mean(np.argmax(logits, axis=1) == self.labels))

    def utility(self, coalition: Sequence[int]) -> float:
        return self.accuracy_of(self.logits(coalition))

    def per_class(self, coalition: Sequence[int]) -> dict[int, float]:
        correct = np.argmax(self.logits(coalition), axis=1) == self.labels
        return {int(c): float(correct[self.labels == c].mean()) for c in np.unique(self.labels)}

    def all_utilities(self) -> Array:
        """u(S) for every coalition, indexed by its bit mask (bit k: player k is in S)."""
        n = len(self.players)
        if n > EXACT_LIMIT:
            raise ConfigError(f"{n} silos: exact enumeration stops at {EXACT_LIMIT}")
        values = np.empty(1 << n)
        numerator = np.zeros_like(self.theta0)
        weight = 0.0
        mask = 0
        values[0] = self.accuracy_of(self.theta0)
        for step in range(1, 1 << n):
            # Gray code: consecutive coalitions differ by the player at the lowest set bit.
            k = (step & -step).bit_length() - 1
            player = self.players[k]
            sign = -1.0 if mask >> k & 1 else 1.0
            mask ^= 1 << k
            numerator += sign * player.weighted_tangent
            weight += sign * player.weight  # weights are positive: never 0 for mask ≠ 0
            values[mask] = self.accuracy_of(self.theta0 + numerator / weight)
        return values


@dataclass(frozen=True)
class ShapleyResult:
    values: tuple[float, ...]
    standard_errors: tuple[float, ...]
    method: str  # "exact" or "permutations"
    samples: int  # permutations drawn (0 for exact)


def exact_shapley(utilities: Array, n: int) -> ShapleyResult:
    """φₖ = Σ_{S ∌ k} |S|! (n − |S| − 1)! / n! · (u(S ∪ {k}) − u(S))."""
    masks = np.arange(1 << n)
    sizes = np.array([bin(m).count("1") for m in masks])
    factor = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    )
    values = []
    for k in range(n):
        without = masks[(masks >> k & 1) == 0]
        gains = utilities[without | (1 << k)] - utilities[without]
        values.append(float(np.sum(factor[sizes[without]] * gains)))
    return ShapleyResult(tuple(values), (0.0,) * n, "exact", 0)


def sampled_shapley(game: CompositionGame, *, samples: int, seed: int) -> ShapleyResult:
    """Mean marginal contribution over ``samples`` random orders of the silos."""
    if samples < 2:
        raise ConfigError(f"permutation sampling needs at least 2 samples, got {samples}")
    n = len(game.players)
    rng = np.random.default_rng(seed)
    empty = game.accuracy_of(game.theta0)
    gains = np.zeros((samples, n))
    for row in range(samples):
        numerator = np.zeros_like(game.theta0)
        weight, previous = 0.0, empty
        for k in rng.permutation(n):
            numerator += game.players[k].weighted_tangent
            weight += game.players[k].weight
            current = game.accuracy_of(game.theta0 + numerator / weight)
            gains[row, k] = current - previous
            previous = current
    errors = gains.std(axis=0, ddof=1) / math.sqrt(samples)
    return ShapleyResult(
        tuple(float(v) for v in gains.mean(axis=0)),
        tuple(float(e) for e in errors),
        "permutations",
        samples,
    )


def shapley(game: CompositionGame, *, samples: int = 200, seed: int = 0) -> ShapleyResult:
    """Exact up to ``EXACT_LIMIT`` silos, permutation sampling beyond."""
    n = len(game.players)
    if n == 0:
        return ShapleyResult((), (), "exact", 0)
    if n <= EXACT_LIMIT:
        return exact_shapley(game.all_utilities(), n)
    return sampled_shapley(game, samples=samples, seed=seed)


def leave_one_out(game: CompositionGame) -> dict[str, float]:
    """u(all) − u(all ∖ {k}) for each silo k."""
    everyone = list(range(len(game.players)))
    full = game.utility(everyone)
    return {
        p.name: full - game.utility([j for j in everyone if j != k])
        for k, p in enumerate(game.players)
    }


def players_from(
    tangents: Mapping[str, Array], owners: Mapping[str, str], weights: Mapping[str, float]
) -> list[Player]:
    """One player per silo, from each component's tangent logits, owner and weight, in
    silo-name order (so a valuation does not depend on arrival order)."""
    by_silo: dict[str, list[str]] = {}
    for component_id in sorted(tangents):
        by_silo.setdefault(owners[component_id], []).append(component_id)
    return [
        make_player(silo, [tangents[c] for c in ids], [weights[c] for c in ids])
        for silo, ids in sorted(by_silo.items())
    ]


__all__ = [
    "EXACT_LIMIT",
    "CompositionGame",
    "Player",
    "ShapleyResult",
    "exact_shapley",
    "leave_one_out",
    "make_player",
    "players_from",
    "sampled_shapley",
    "shapley",
]
