"""Deterministic splits of label arrays: public/private, silos, increments.

Pure functions on numpy arrays: no images are read. Each takes the labels of the whole
split (``targets``), works on positions into it, and draws all randomness from
``numpy.random.Generator(PCG64(seed))``, so the same inputs and seed give the same arrays
on every machine. Every returned index array is sorted int64.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from tmc.common.data.base import IntArray, as_index_array
from tmc.common.data.spec import SplitSpec
from tmc.common.errors import ConfigError, DataError

DIRICHLET_MAX_DRAWS = 100
"""Re-draws of a Dirichlet split before giving up on giving every silo a sample."""


def _generator(seed: int) -> np.random.Generator:
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    return np.random.Generator(np.random.PCG64(seed))


def _labels(targets: npt.ArrayLike) -> IntArray:
    labels = as_index_array(targets, what="targets")
    if labels.size and labels.min() < 0:
        raise DataError(f"targets must be non-negative labels, found {labels.min()}")
    return labels


def _positions(indices: npt.ArrayLike, size: int) -> IntArray:
    positions = as_index_array(indices, what="indices")
    if positions.size and (positions.min() < 0 or positions.max() >= size):
        raise DataError(
            f"indices must lie in [0, {size}), found [{positions.min()}, {positions.max()}]"
        )
    if len(np.unique(positions)) != len(positions):
        raise DataError("indices must not repeat a sample")
    return positions


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _stratified_deal(
    labels: IntArray, positions: IntArray, parts: int, rng: np.random.Generator
) -> list[IntArray]:
    """Shuffle within each class, lay the classes end to end, deal the result round-robin.

    Dealing continues across class boundaries, so each part gets ⌊n_c/parts⌋ or ⌈n_c/parts⌉
    samples of every class c and the part sizes differ by at most one.
    """
    ordered = [
        rng.permutation(positions[labels[positions] == label])
        for label in np.unique(labels[positions])
    ]
    stream = np.concatenate(ordered) if ordered else np.zeros(0, dtype=np.int64)
    owner = rng.permutation(parts)[np.arange(len(stream)) % parts]
    return [np.sort(stream[owner == part]) for part in range(parts)]


def public_private_split(
    targets: npt.ArrayLike,
    *,
    fraction: float,
    seed: int,
    classes: tuple[int, ...] | list[int] | None = None,
) -> tuple[IntArray, IntArray]:
    """Hold out a stratified public part of ``targets``; the rest is private.

    Guarantees: for each class c drawn from (every class present, or only ``classes``),
    the public part holds round(fraction · n_c) random samples of c, but never all of
    them (every class keeps a private sample); other classes stay wholly private. The two
    arrays are sorted, disjoint, and together hold every position ``0..len(targets)-1``.
    Depends only on ``targets``, ``fraction``, ``seed`` and ``classes``.
    """
    labels = _labels(targets)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"public fraction must lie in [0, 1), got {fraction}")
    present = np.unique(labels)
    if classes is None:
        chosen = present
    else:
        chosen = np.unique(as_index_array(list(classes), what="public classes"))
        missing = sorted(set(chosen.tolist()) - set(present.tolist()))
        if missing:
            raise DataError(f"public classes {missing} have no samples (present: {present})")
    rng = _generator(seed)
    public_parts = []
    for label in chosen:
        members = rng.permutation(np.flatnonzero(labels == label))
        take = min(_round_half_up(fraction * len(members)), len(members) - 1)
        public_parts.append(members[:take])
    public = np.sort(np.concatenate(public_parts)) if public_parts else np.zeros(0, np.int64)
    private = np.setdiff1d(np.arange(len(labels), dtype=np.int64), public, assume_unique=True)
    return public.astype(np.int64), private.astype(np.int64)


def split_silos(
    targets: npt.ArrayLike,
    indices: npt.ArrayLike,
    *,
    num_silos: int,
    split: SplitSpec,
    seed: int,
) -> list[IntArray]:
    """Divide the samples at ``indices`` (positions into ``targets``) among ``num_silos``.

    - ``class``: the classes present, in a seeded random order, are cut into ``num_silos``
      contiguous blocks whose sizes differ by at most one class; a silo holds every sample
      of its classes, so silos share no class. More silos than classes is a DataError.
    - ``iid``: stratified random; silo sizes, and each class's count per silo, differ by
      at most one.
    - ``dirichlet``: per class, proportions p ~ Dir(β·1) over the silos and the class's
      shuffled samples cut at those proportions (Hsu et al., 2019); the whole draw is
      repeated (up to ``DIRICHLET_MAX_DRAWS`` times) until every silo has a sample.

    Guarantees: the arrays are sorted, disjoint, each non-empty, and their union is
    ``indices``.
    """
    labels = _labels(targets)
    positions = _positions(indices, len(labels))
    if num_silos < 1:
        raise ConfigError(f"num_silos must be at least 1, got {num_silos}")
    if len(positions) < num_silos:
        raise DataError(f"{len(positions)} samples cannot fill {num_silos} silos")
    rng = _generator(seed)
    if split.kind == "class":
        present = np.unique(labels[positions])
        if num_silos > len(present):
            raise DataError(
                f"a class split needs at least one class per silo: {num_silos} silos but only "
                f"{len(present)} classes; use fewer silos or an iid/dirichlet split"
            )
        blocks = np.array_split(rng.permutation(present), num_silos)
        return [np.sort(positions[np.isin(labels[positions], block)]) for block in blocks]
    if split.kind == "iid":
        return _stratified_deal(labels, positions, num_silos, rng)
    if split.beta is None:  # pragma: no cover - SplitSpec requires beta for dirichlet
        raise ConfigError("dirichlet split without beta")
    return _dirichlet(labels, positions, num_silos, split.beta, rng)


def _dirichlet(
    labels: IntArray, positions: IntArray, num_silos: int, beta: float, rng: np.random.Generator
) -> list[IntArray]:
    alpha = np.full(num_silos, beta)
    for _ in range(DIRICHLET_MAX_DRAWS):
        shares: list[list[IntArray]] = [[] for _ in range(num_silos)]
        for label in np.unique(labels[positions]):
            members = rng.permutation(positions[labels[positions] == label])
            proportions = rng.dirichlet(alpha)
            if not np.all(np.isfinite(proportions)):
                break
            cuts = (np.cumsum(proportions) * len(members)).astype(np.int64)[:-1]
            for silo, part in enumerate(np.split(members, cuts)):
                shares[silo].append(part)
        else:
            silos = [np.sort(np.concatenate(parts)).astype(np.int64) for parts in shares]
            if min(len(silo) for silo in silos) > 0:
                return silos
    raise DataError(
        f"a dirichlet:{beta} split left a silo empty in {DIRICHLET_MAX_DRAWS} draws "
        f"({len(positions)} samples, {num_silos} silos); use a larger beta or fewer silos"
    )


def split_increments(
    indices: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    num_increments: int,
    seed: int,
) -> list[IntArray]:
    """A silo's samples arriving over time: increment r is the data that arrives in round r.

    Guarantees: a stratified random split into ``num_increments`` sorted, disjoint,
    non-empty parts whose union is ``indices``; part sizes, and each class's count per
    part, differ by at most one. Fewer samples than increments is a DataError.
    """
    labels = _labels(targets)
    positions = _positions(indices, len(labels))
    if num_increments < 1:
        raise ConfigError(f"num_increments must be at least 1, got {num_increments}")
    if len(positions) < num_increments:
        raise DataError(
            f"{len(positions)} samples cannot be split into {num_increments} increments; "
            "use fewer increments or fewer silos"
        )
    return _stratified_deal(labels, positions, num_increments, _generator(seed))


def silo_classes(targets: npt.ArrayLike, idx: npt.ArrayLike) -> list[int]:
    """The sorted labels present among the samples at ``idx``."""
    labels = _labels(targets)
    return [int(label) for label in np.unique(labels[_positions(idx, len(labels))])]


def label_histogram(targets: npt.ArrayLike, idx: npt.ArrayLike, num_classes: int) -> list[int]:
    """How many of the samples at ``idx`` carry each label ``0..num_classes-1``."""
    labels = _labels(targets)
    chosen = labels[_positions(idx, len(labels))]
    if chosen.size and chosen.max() >= num_classes:
        raise DataError(f"label {chosen.max()} is outside [0, {num_classes})")
    return [int(count) for count in np.bincount(chosen, minlength=num_classes)]
