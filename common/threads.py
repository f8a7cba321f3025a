"""Torch's intra-op thread count, set for a block of work and restored after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the caller's setting.

    Results of CPU reductions depend on how the work is split across threads, so anything
    that must be bit-reproducible across machines (the built-in base's pre-training) pins
    the count; benchmarks pin it to keep timings meaningful on a shared machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
