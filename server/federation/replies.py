"""What a silo's replies may claim: checked against what the server asked of the node and
what its silo declared at hello.

The pydantic models of ``common.federation.messages`` bound every field on its own (types,
ranges, finite floats, string lengths); these checks relate the fields to the run. A
component must be for the round, increment and encoding asked, of the silo the node speaks
for, on no more examples than that increment holds and on the data it declared (its
fingerprint), with classes the silo declared and, under DP-SGD, the sampling rate and steps
that its example count and the run's batch size and epochs give. An evaluation must be of
the node's silo, on no more test examples than the silo declared. Each failure is a
:class:`ProtocolError` whose message is the reason the audit log records.
"""

from __future__ import annotations

import math

from tmc.common.components import Component
from tmc.common.errors import ProtocolError
from tmc.common.federation import EvaluateResult, Hello
from tmc.common.federation.config import FederationConfig
from tmc.common.training.accounting import dp_schedule
from tmc.server.registry import PrivacyFloor, privacy_refusal

SCHEDULE_TOLERANCE = 1e-9
"""Relative slack on a stated sampling rate (the same division on another machine)."""


def check_component(
    hello: Hello,
    component: Component,
    *,
    node: int,
    round: int,
    increment: int,
    config: FederationConfig,
) -> None:
    """Refuse a component that is not what the server asked of ``node``, or whose claims
    do not fit what its silo declared in ``hello``."""
    meta = component.meta
    if (meta.round, meta.increment) != (round, increment):
        raise ProtocolError(
            f"component is for round {meta.round} increment {meta.increment}, "
            f"the server asked round {round} increment {increment}"
        )
    if meta.silo != hello.silo:
        raise ProtocolError(
            f"component claims silo {meta.silo!r}, but node {node} speaks for {hello.silo!r}"
        )
    if meta.encoding != config.upload_dtype:
        raise ProtocolError(
            f"component is encoded {meta.encoding}, the server asked {config.upload_dtype}"
        )
    declared = hello.increment_sizes[increment]
    if meta.num_examples > declared:
        raise ProtocolError(
            f"component states {meta.num_examples} examples, but the silo declared "
            f"{declared} for increment {increment} at hello"
        )
    fingerprint = hello.increment_fingerprints[increment]
    if meta.data_fingerprint != fingerprint:
        raise ProtocolError(
            f"component's data fingerprint {str(meta.data_fingerprint)[:12]}… is not that of "
            f"increment {increment} declared at hello ({fingerprint[:12]}…)"
        )
    unknown = sorted(set(meta.classes) - set(hello.classes))
    if unknown:
        raise ProtocolError(
            f"component states classes {unknown[:5]} the silo did not declare at hello"
        )
    _check_schedule(component, config)
    if problem := privacy_refusal(
        PrivacyFloor.of(config.privacy_config()), meta.privacy, num_examples=meta.num_examples
    ):
        raise ProtocolError(problem)


def _check_schedule(component: Component, config: FederationConfig) -> None:
    stated, n = component.meta.privacy, component.meta.num_examples
    if stated is None:
        return
    train = config.train_config()
    rate, steps, _ = dp_schedule(num_examples=n, batch_size=train.batch_size, epochs=train.epochs)
    if stated.steps != steps or not math.isclose(
        stated.sampling_rate, rate, rel_tol=SCHEDULE_TOLERANCE
    ):
        raise ProtocolError(
            f"component states DP-SGD with q = {stated.sampling_rate:.4g} and {stated.steps} "
            f"steps, but {n} examples at batch-size {train.batch_size} for {train.epochs} "
            f"epochs give q = {rate:.4g} and {steps} steps: its privacy claim does not "
            "describe this run"
        )


def check_evaluation(hello: Hello, result: EvaluateResult, *, node: int) -> None:
    """Refuse an evaluation that is not of ``node``'s silo or weighs more test examples
    than the silo declared in ``hello`` (its weight in the federated accuracy)."""
    if result.silo != hello.silo:
        raise ProtocolError(
            f"evaluation claims silo {result.silo!r}, but node {node} speaks for {hello.silo!r}"
        )
    if result.num_examples > hello.num_test_examples:
        raise ProtocolError(
            f"evaluation states {result.num_examples} test examples, but the silo declared "
            f"{hello.num_test_examples} at hello"
        )


__all__ = ["SCHEDULE_TOLERANCE", "check_component", "check_evaluation"]
