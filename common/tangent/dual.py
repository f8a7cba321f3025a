"""One activation of the tangent forward: its primal value and its tangent (J·Δ there).

The pair is held either as two tensors (the autograd path: only the tangent is
differentiated, so the primal is never part of a backward pass) or stacked along the batch
dimension as one tensor ``[x; t]`` (the no-grad path: a linear map A with weights W0 is
then applied to both halves in one call, A([x; t]) = [A(x); A(t)], which costs one weight
reorder and one elementwise pass instead of two). ``primal`` and ``tangent`` are then the
two halves of ``stacked``, as views.
"""

from __future__ import annotations

import torch

Tangent = torch.Tensor | None
Dual = tuple[torch.Tensor, Tangent]


class DualValue:
    """(primal, tangent) of one graph node; ``tangent is None`` means exactly zero."""

    __slots__ = ("fresh", "primal", "stacked", "tangent")

    def __init__(
        self,
        primal: torch.Tensor,
        tangent: Tangent,
        *,
        stacked: torch.Tensor | None = None,
        fresh: bool = False,
    ) -> None:
        self.primal = primal
        self.tangent = tangent
        self.stacked = stacked
        self.fresh = fresh
        """The tensors were allocated by the step that made this value (they alias no other
        value), so its only consumer may overwrite them."""

    @classmethod
    def of_stack(cls, z: torch.Tensor, rows: int, *, fresh: bool) -> DualValue:
        """The value whose primal is ``z[:rows]`` and whose tangent is ``z[rows:]``."""
        return cls(z[:rows], z[rows:], stacked=z, fresh=fresh)

    @property
    def rows(self) -> int:
        """Batch rows of the primal (where the tangent starts in ``stacked``)."""
        return self.primal.shape[0]

    def stack(self) -> torch.Tensor:
        """``[primal; tangent]`` along dim 0, concatenated once if held as two tensors (the
        copy is then owned by this value). Only for values with a tangent."""
        if self.stacked is None:
            if self.tangent is None:
                raise ValueError("a value without tangent has nothing to stack")
            rows = self.rows
            z = torch.cat([self.primal, self.tangent.expand_as(self.primal)])
            self.primal, self.tangent, self.stacked, self.fresh = z[:rows], z[rows:], z, True
        return self.stacked

    def pair(self) -> Dual:
        return self.primal, self.tangent
