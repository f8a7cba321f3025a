"""Request threads share one loaded model: answers computed at once from many threads are
the answers computed one by one, on the traced path and on the generic (jvp) one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tmc.common.tangent import TangentModel
from tmc.server.composed import ComposedModel
from tmc.server.registry import Registry
from tmc.server.serving import Served


@pytest.mark.parametrize("path", ["dual", "jvp"])
def test_concurrent_answers_equal_sequential_ones(registry: Path, path: str) -> None:
    with Registry.open(registry, actor="test") as opened:
        composed = ComposedModel.from_registry(opened)
        delta = dict(opened.composed_delta())
    model = TangentModel(composed.base.network, composed.base.tangent_names, path=path)
    model.load_delta(delta)
    served = Served(replace(composed, model=model.eval()))
    assert served.composed.model.path == path
    generator = torch.Generator().manual_seed(0)
    batches = [torch.rand(4, 1, 8, 8, generator=generator) for _ in range(64)]
    expected = [served.scores(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(served.scores, batches))
    for got, want in zip(answers, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
