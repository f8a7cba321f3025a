"""Δ: a set of tangent-parameter updates, with algebra that reads like the maths.

Like task vectors (Ilharco et al., 2023; mlfoundations/task_vectors), a :class:`Delta`
supports ``+``, ``-``, scalar ``*`` and ``/``, unary ``-`` and ``sum()``; operands must have
the same keys and shapes. Tensors are kept on the CPU in float32, their wire dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch

from tmc.common.errors import ComponentSchemaError, CompositionError

DELTA_DTYPE = torch.float32


class Delta(Mapping[str, torch.Tensor]):
    """An immutable mapping from base parameter names to float32 tensors."""

    __slots__ = ("_tensors",)

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        wrong = [f"{n}: {t.dtype}" for n, t in tensors.items() if t.dtype != DELTA_DTYPE]
        if wrong:
            # Refuse rather than cast: a silent cast would change the bytes, hence the id.
            raise ComponentSchemaError(f"Δ tensors must be float32; got {', '.join(wrong[:5])}")
        self._tensors: dict[str, torch.Tensor] = {
            name: tensors[name].detach().to("cpu").contiguous() for name in sorted(tensors)
        }

    # -- Mapping -----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return f"Delta({len(self)} tensors, {self.numel()} values, norm={self.norm():.4g})"

    # -- algebra -----------------------------------------------------------------------------

    def _check_compatible(self, other: Delta) -> None:
        if self._tensors.keys() != other._tensors.keys():
            raise ComponentSchemaError(
                "cannot combine deltas with different keys: "
                f"{sorted(set(self) ^ set(other))[:5]} differ"
            )
        for name, tensor in self._tensors.items():
            if tensor.shape != other._tensors[name].shape:
                raise ComponentSchemaError(
                    f"cannot combine deltas: {name} is {tuple(tensor.shape)} "
                    f"vs {tuple(other._tensors[name].shape)}"
                )

    def __add__(self, other: object) -> Delta:
        if not isinstance(other, Delta):
            return NotImplemented
        self._check_compatible(other)
        return Delta({n: t + other._tensors[n] for n, t in self._tensors.items()})

    def __radd__(self, other: object) -> Delta:
        if isinstance(other, int) and other == 0:  # so that sum(deltas) works
            return self
        return NotImplemented

    def __sub__(self, other: object) -> Delta:
        if not isinstance(other, Delta):
            return NotImplemented
        self._check_compatible(other)
        return Delta({n: t - other._tensors[n] for n, t in self._tensors.items()})

    def __neg__(self) -> Delta:
        return Delta({n: -t for n, t in self._tensors.items()})

    def __mul__(self, scalar: object) -> Delta:
        if isinstance(scalar, bool) or not isinstance(scalar, int | float):
            return NotImplemented
        return Delta({n: t * float(scalar) for n, t in self._tensors.items()})

    __rmul__ = __mul__

    def __truediv__(self, scalar: object) -> Delta:
        if isinstance(scalar, bool) or not isinstance(scalar, int | float):
            return NotImplemented
        if scalar == 0:
            raise CompositionError("cannot divide a delta by zero")
        return Delta({n: t / float(scalar) for n, t in self._tensors.items()})

    # -- properties --------------------------------------------------------------------------

    def norm(self) -> float:
        """Global L2 norm over every tensor (accumulated in float64)."""
        return math.sqrt(sum(float(t.double().pow(2).sum()) for t in self._tensors.values()))

    def numel(self) -> int:
        return sum(t.numel() for t in self._tensors.values())

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self._tensors.values())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(t.shape) for n, t in self._tensors.items()}

    def to_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)

    @classmethod
    def zeros(cls, shapes: Mapping[str, tuple[int, ...]]) -> Delta:
        return cls({n: torch.zeros(s, dtype=DELTA_DTYPE) for n, s in shapes.items()})

    def equal(self, other: Delta) -> bool:
        """Bit-for-bit equality (same keys, shapes and bytes)."""
        return self._tensors.keys() == other._tensors.keys() and all(
            torch.equal(t, other._tensors[n]) for n, t in self._tensors.items()
        )


def weighted_sum(deltas: Sequence[Delta], weights: Iterable[float]) -> Delta:
    """Σ wᵢ Δᵢ in floating point (in the given order; see ``common.components.compose``
    for the exact, order-free composition the registry uses)."""
    weights = list(weights)
    if len(weights) != len(deltas) or not deltas:
        raise CompositionError(
            f"weighted_sum needs one weight per delta and at least one delta "
            f"(got {len(deltas)} deltas, {len(weights)} weights)"
        )
    return sum(
        (d * w for d, w in zip(deltas, weights, strict=True)), start=Delta.zeros(deltas[0].shapes())
    )
