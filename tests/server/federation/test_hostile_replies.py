"""Hostile silos over the in-process grid: every field of every reply a silo sends, at its
bounds and beyond (huge, negative, NaN, infinite, wrong types, missing, another node's silo
name). Each case is refused with a reason in the audit log, and the round completes and
commits for the other silos.

One federation runs per kind of reply (hello, component, evaluation): two honest silos
(silo-0, silo-1) and one hostile silo per case, each node rewriting its reply as its case
says, so that a case is checked by the reason recorded for its own silo."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.app import Message

from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.rounds_helpers import run_rounds
from tmc.common.federation import EVALUATE, HELLO, REPLY, THETA0, TRAIN
from tmc.common.federation.config import FederationConfig
from tmc.common.models import MaterializedBase
from tmc.server.federation import read_history

HONEST = {"silo-0", "silo-1"}  # nodes 1000 and 1001; node 1000 + k speaks for silo-k
HUGE = 10**400
OTHER_SHA = "f" * 64

Edit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    message_type: str
    edit: Edit
    reason: str
    """A substring the audit log's reason must contain."""


def _set(key: str, value: object) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        payload[key] = value

    return edit


def _delete(key: str) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        del payload[key]

    return edit


def _add(key: str, amount: int) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        payload[key] += amount

    return edit


def _element(key: str, value: object) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        payload[key] = [value, *payload[key][1:]]

    return edit


COMPONENT_CASES: dict[str, Case] = {
    "num_examples huge": Case(TRAIN, _set("num_examples", HUGE), "num_examples"),
    "num_examples over the bound": Case(TRAIN, _set("num_examples", 10**13), "num_examples"),
    "num_examples over the declared": Case(TRAIN, _add("num_examples", 1), "but the silo declared"),
    "num_examples zero": Case(TRAIN, _set("num_examples", 0), "num_examples"),
    "num_examples negative": Case(TRAIN, _set("num_examples", -5), "num_examples"),
    "num_examples a float": Case(TRAIN, _set("num_examples", 12.5), "num_examples"),
    "num_examples a string": Case(TRAIN, _set("num_examples", "many"), "num_examples"),
    "num_examples missing": Case(TRAIN, _delete("num_examples"), "num_examples"),
    "round huge": Case(TRAIN, _set("round", HUGE), "round"),
    "round negative": Case(TRAIN, _set("round", -1), "round"),
    "round another": Case(TRAIN, _set("round", 7), "the server asked round 1"),
    "increment another": Case(TRAIN, _set("increment", 3), "the server asked round 1"),
    "silo of another node": Case(TRAIN, _set("silo", "silo-0"), "claims silo 'silo-0'"),
    "silo too long": Case(TRAIN, _set("silo", "s" * 5000), "silo"),
    "silo missing": Case(TRAIN, _delete("silo"), "silo"),
    "base another": Case(TRAIN, _set("base_sha256", OTHER_SHA), "base"),
    "classes negative": Case(TRAIN, _set("classes", [-1]), "non-negative"),
    "classes huge": Case(TRAIN, _set("classes", [HUGE]), "classes"),
    "classes undeclared": Case(TRAIN, _set("classes", [0, 99_999]), "did not declare"),
    "metrics NaN": Case(TRAIN, _set("metrics", {"seconds": float("nan")}), "finite"),
    "metrics inf": Case(TRAIN, _set("metrics", {"seconds": float("inf")}), "finite"),
    "metrics a string": Case(TRAIN, _set("metrics", {"seconds": "fast"}), "metrics"),
    "fingerprint another": Case(TRAIN, _set("data_fingerprint", OTHER_SHA), "fingerprint"),
    "fingerprint missing": Case(TRAIN, _set("data_fingerprint", None), "fingerprint"),
    "task too long": Case(TRAIN, _set("task", "t" * 5000), "task"),
    "created_at not a time": Case(TRAIN, _set("created_at", "yesterday"), "created_at"),
    "encoding unknown": Case(TRAIN, _set("encoding", "float8"), "encoding"),
    "unknown field": Case(TRAIN, _set("weight", 1e9), "weight"),
}

EVALUATION_CASES: dict[str, Case] = {
    "num_examples huge": Case(EVALUATE, _set("num_examples", HUGE), "num_examples"),
    "num_examples faking the accuracy": Case(
        EVALUATE, _set("num_examples", 10**15), "num_examples"
    ),
    "num_examples over the declared": Case(
        EVALUATE, _add("num_examples", 1), "but the silo declared"
    ),
    "num_examples negative": Case(EVALUATE, _set("num_examples", -1), "num_examples"),
    "num_examples a string": Case(EVALUATE, _set("num_examples", "all"), "num_examples"),
    "accuracy NaN": Case(EVALUATE, _set("accuracy", float("nan")), "accuracy"),
    "accuracy inf": Case(EVALUATE, _set("accuracy", float("inf")), "accuracy"),
    "accuracy above one": Case(EVALUATE, _set("accuracy", 1.5), "accuracy"),
    "accuracy negative": Case(EVALUATE, _set("accuracy", -0.1), "accuracy"),
    "accuracy missing": Case(EVALUATE, _delete("accuracy"), "accuracy"),
    "silo of another node": Case(EVALUATE, _set("silo", "silo-0"), "claims silo 'silo-0'"),
}

HELLO_CASES: dict[str, Case] = {
    "num_test_examples huge": Case(HELLO, _set("num_test_examples", HUGE), "num_test_examples"),
    "num_test_examples negative": Case(HELLO, _set("num_test_examples", -1), "num_test_examples"),
    "increment size negative": Case(HELLO, _element("increment_sizes", -1), "increment_sizes"),
    "increment size huge": Case(HELLO, _element("increment_sizes", HUGE), "increment_sizes"),
    "class count huge": Case(HELLO, _element("class_counts", 10**13), "class_counts"),
    "class label negative": Case(HELLO, _element("classes", -3), "classes"),
    "image size huge": Case(HELLO, _set("image_size", 10**9), "image_size"),
    "problem too long": Case(HELLO, _set("problems", ["p" * 5000]), "problems"),
    "silo of another node": Case(HELLO, _set("silo", "silo-0"), "already served by node"),
    "has_base a string": Case(HELLO, _set("has_base", "perhaps"), "has_base"),
    "θ0 answer restating the data": Case(
        THETA0, _element("increment_sizes", 10**9), "states other facts than its hello"
    ),
}


def _tamper(cases: dict[int, Case]) -> Callable[[int, Message], Message]:
    def tamper(node: int, reply: Message) -> Message:
        case = cases.get(node)
        if case is None or reply.metadata.message_type != case.message_type:
            return reply
        record = reply.content.config_records[REPLY]
        payload = json.loads(str(record["json"]))
        case.edit(payload)
        record["json"] = json.dumps(payload)  # huge ints, NaN and inf as JSON can carry them
        return reply

    return tamper


def _hostile_round(
    cases: dict[str, Case],
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    base: MaterializedBase,
    *,
    committed_hostile: bool,
) -> None:
    names = sorted(cases)
    by_node = {1002 + i: cases[name] for i, name in enumerate(names)}
    silos = len(names) + 2
    config = make_config(rounds=1, increments=1, epochs=1, num_silos=silos, split="iid")
    with run_rounds(config, make_grid(config, tamper=_tamper(by_node)), base) as registry:
        hostile = {f"silo-{2 + i}" for i in range(len(names))}
        expected = HONEST | hostile if committed_hostile else HONEST
        assert {r.silo for r in registry.list_components()} == expected
        reasons: dict[str, str] = {}
        for event in registry.audit_log():
            if event.action == "reject":
                assert event.silo not in reasons, (event.silo, reasons)  # one refusal each
                reasons[str(event.silo)] = str(event.details["reason"])
        for i, name in enumerate(names):
            node, silo = 1002 + i, f"silo-{2 + i}"
            reason = reasons.get(silo, reasons.get(f"node:{node}", ""))
            assert cases[name].reason in reason, (name, reason)
        assert len(reasons) == len(names)
        version = registry.current_version()
        assert version is not None
        assert version.count == len(expected)
        assert registry.verify().ok
    (summary,) = read_history(config.registry_path)  # the round's line was written
    assert summary.version == version.number
    assert len(summary.rejected) == len(names)
    assert set(summary.accepted_silos) == expected
    if committed_hostile:
        assert summary.federated_accuracy is not None
        assert 0.9 < summary.federated_accuracy <= 1.0


def test_hostile_component_replies_are_refused_and_the_round_commits_the_others(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    _hostile_round(COMPONENT_CASES, make_config, make_grid, digits_base, committed_hostile=False)


def test_hostile_evaluations_are_refused_and_the_round_keeps_its_version_and_history(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    _hostile_round(EVALUATION_CASES, make_config, make_grid, digits_base, committed_hostile=True)


def test_hostile_hellos_are_refused_and_the_others_train(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    _hostile_round(HELLO_CASES, make_config, make_grid, digits_base, committed_hostile=False)


def test_a_reply_that_is_no_json_or_no_record_is_refused(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    def tamper(node: int, reply: Message) -> Message:
        if node == 1001 and reply.metadata.message_type == TRAIN:
            reply.content.config_records[REPLY]["json"] = "{not json"
        if node == 1002 and reply.metadata.message_type == TRAIN:
            del reply.content.config_records[REPLY]
        return reply

    config = make_config(rounds=1, increments=1, epochs=1)
    with run_rounds(config, make_grid(config, tamper=tamper), digits_base) as registry:
        assert {r.silo for r in registry.list_components()} == {"silo-0"}
        rejects = [e for e in registry.audit_log() if e.action == "reject"]
        reasons = {e.silo: str(e.details["reason"]) for e in rejects}
        assert "not a valid ComponentMeta" in reasons["silo-1"]
        assert "has no 'reply' config record" in reasons["silo-2"]
