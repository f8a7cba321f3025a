"""The federated rounds: discover silos, train components, commit, compose, evaluate.

FedAvg's strategy cannot hold per-silo components (it averages identical keys), so the
ServerApp runs its own loop on the Grid (docs/notes/flower.md). Every reply is validated and
committed to the registry as it arrives, so a crash later in the round loses nothing
acknowledged; a bad or late reply is recorded with its reason and the round goes on.

Nothing a silo sends is trusted beyond its bounds: every reply is a pydantic model with
bounds on each field, its silo name must be the one bound to the node that answered, its
counts may not exceed what the silo declared at hello (``replies``), and the whole
handling of one reply runs inside one guard (:meth:`Federation._exchange`), so that no
reply, however malformed, stops the round for the other silos.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from tmc.common.data import DataSpec, LabeledDataset
from tmc.common.errors import FederationError, ProtocolError, TMCError
from tmc.common.federation import (
    DELTA,
    EVALUATE,
    HELLO,
    INSTRUCTION,
    REFUSED,
    REPLY,
    THETA0,
    THETA0_ARRAYS,
    TRAIN,
    EvaluateInstruction,
    EvaluateResult,
    Hello,
    HelloRequest,
    Refusal,
    TrainInstruction,
    component_from_content,
    content_bytes,
    pack,
    tensors_to_arrays,
    unpack,
)
from tmc.common.federation.config import FederationConfig
from tmc.common.models import MaterializedBase
from tmc.common.tangent import TangentModel
from tmc.common.training import evaluate
from tmc.server.federation.admission import refusal
from tmc.server.federation.history import Rejection, RoundSummary, append_round, read_history
from tmc.server.federation.identity import SiloDirectory
from tmc.server.federation.replies import check_component, check_evaluation
from tmc.server.federation.stopping import StopRequest
from tmc.server.registry import Registry

log = logging.getLogger(__name__)

ReplyHandler = Callable[[Message, Message], None]


@dataclass
class _RoundLedger:
    accepted: list[str] = field(default_factory=list)
    accepted_silos: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    training_seconds: list[float] = field(default_factory=list)
    upload_bytes: list[int] = field(default_factory=list)


class Federation:
    """One run of the ServerApp over a Grid, writing to a registry."""

    def __init__(
        self,
        grid: Grid,
        config: FederationConfig,
        registry: Registry,
        base: MaterializedBase,
        *,
        data: DataSpec,
        run_id: int,
        test_set: LabeledDataset | None = None,
        on_round: Callable[[RoundSummary], None] | None = None,
        poll_interval: float = 0.1,
        stop: StopRequest | None = None,
    ) -> None:
        self.grid = grid
        self.config = config
        self.registry = registry
        self.base = base
        self.data = data
        self.run_id = run_id
        self.test_set = test_set
        self.on_round = on_round
        self.poll_interval = poll_interval
        self.stop = stop or StopRequest()
        self.hello = HelloRequest(
            base_sha256=base.sha256, base_spec_json=base.spec.canonical_json(), data=data
        )
        self.directory = SiloDirectory(require_registered=config.require_authenticated_silos)
        self.refused: dict[int, str] = {}
        """Nodes refused this run, and why: not greeted again until the next run, except
        by a continual run's checks (which audit a refusal only when its reason changes)."""
        self.shapes = {name: shape for name, (shape, _) in base.tangent_shapes().items()}
        self.model = TangentModel(base.network, base.tangent_names)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> list[RoundSummary]:
        """``config.rounds`` rounds, numbered on from the registry's last one (a continual
        run, ``rounds = 0``, is ``continual.run_continually``)."""
        first = self.last_round() + 1
        return [self.round(r) for r in range(first, first + self.config.rounds)]

    def last_round(self) -> int:
        """The last round run against this registry: the versions' rounds, and the rounds
        in its history (a round that committed nothing new makes no version)."""
        rounds = [v.round for v in self.registry.versions() if v.round is not None]
        rounds += [h.round for h in read_history(self.registry.root)]
        return max(rounds, default=0)

    def round(self, number: int) -> RoundSummary:
        start = time.perf_counter()
        ledger, plan, idle = self._plan(number, again=False)
        return self._play(number, start, ledger, plan, idle)

    def round_if_new(self, number: int) -> RoundSummary | None:
        """Round ``number`` of a continual run: every online silo is asked again what it
        holds; when none has an increment it has not contributed (or a stop was asked
        for), the round is skipped (None): nothing is trained, committed or numbered."""
        start = time.perf_counter()
        ledger, plan, idle = self._plan(number, again=True)
        if self.stop.requested():
            return None
        if not plan:
            log.info("no silo has a new increment: round %d waits (%d idle)", number, len(idle))
            return None
        return self._play(number, start, ledger, plan, idle)

    def _plan(self, number: int, *, again: bool) -> tuple[_RoundLedger, dict[int, int], list[str]]:
        """Greet the silos; which node trains which increment, and which silos idle."""
        online = self._online_nodes()
        ledger = _RoundLedger()
        if again:
            for node in self.directory.bound_nodes():
                if node not in online:  # it says hello again when it is back
                    self.directory.forget_node(node)
        self._introduce(online, number, ledger, again=again)
        plan = {
            node: increment
            for node in self.directory.bound_nodes()
            if node in online and (increment := self._next_increment(node, number)) is not None
        }
        idle = [
            self.directory.silo_of(n) or str(n)
            for n in self.directory.bound_nodes()
            if n in online and n not in plan
        ]
        return ledger, plan, idle

    def _play(
        self,
        number: int,
        start: float,
        ledger: _RoundLedger,
        plan: dict[int, int],
        idle: list[str],
    ) -> RoundSummary:
        log.info("round %d: %d silos train, %d idle", number, len(plan), len(idle))
        self._train(number, plan, ledger)
        version = None
        if self.registry.list_components(status="active"):
            version = self.registry.commit_version(
                round=number, reason=f"round {number}: {len(ledger.accepted)} new components"
            )
        scored = version if not self.stop.requested() else None  # stopping: commit, leave
        accuracy, per_class = self._evaluate_on_server(scored is not None)
        federated = self._evaluate_federated(number, scored.number if scored else None, ledger)
        summary = RoundSummary(
            run_id=self.run_id,
            round=number,
            silos_asked=tuple(sorted(self.directory.silo_of(n) or str(n) for n in plan)),
            accepted=tuple(ledger.accepted),
            accepted_silos=tuple(sorted(ledger.accepted_silos)),
            rejected=tuple(ledger.rejected),
            idle=tuple(sorted(idle)),
            version=version.number if version else None,
            components=version.count if version else 0,
            accuracy=accuracy,
            per_class=per_class,
            federated_accuracy=federated,
            seconds=time.perf_counter() - start,
            slowest_training_seconds=max(ledger.training_seconds, default=0.0),
            upload_bytes=sum(ledger.upload_bytes),
        )
        append_round(self.registry.root, summary)
        log.info(
            "round %d done: +%d components (%d rejected), version %s with %d components, "
            "accuracy %s, %.1f s",
            number,
            len(ledger.accepted),
            len(ledger.rejected),
            summary.version,
            summary.components,
            "n/a" if accuracy is None else f"{accuracy:.4f}",
            summary.seconds,
        )
        if self.on_round is not None:
            self.on_round(summary)
        return summary

    # -- silos ---------------------------------------------------------------------------------

    def _online_nodes(self) -> set[int]:
        """Wait (bounded) until ``min-silos`` nodes are online; all online nodes."""
        deadline = time.monotonic() + self.config.wait_seconds
        while True:
            nodes = set(self.grid.get_node_ids())
            if len(nodes) >= self.config.min_silos:
                self.directory.update_registered((n.node_id, n.name) for n in self.grid.get_nodes())
                return nodes
            if time.monotonic() > deadline:
                raise FederationError(
                    f"only {len(nodes)} silo node(s) online after "
                    f"{self.config.wait_seconds:.0f} s; min-silos is {self.config.min_silos}"
                )
            if self.stop.wait(self.poll_interval * 5):
                raise FederationError("stopped while waiting for silos to come online")

    def _introduce(
        self, online: Iterable[int], number: int, ledger: _RoundLedger, *, again: bool = False
    ) -> None:
        """Say hello to nodes not yet bound (nor refused) this run, or with ``again`` to
        every online node (what it holds may have grown, its refusal may no longer hold);
        admit or refuse each silo; send θ0 to admitted nodes that lack it and the reason to
        refused ones. A refusal repeated word for word is neither audited nor sent again."""
        new = sorted(
            set(online) if again else set(online) - set(self.directory.hellos) - set(self.refused)
        )
        if not new:
            return
        needs_theta0: list[int] = []
        refusals: list[Message] = []

        def on_hello(msg: Message, reply: Message) -> None:
            node = msg.metadata.dst_node_id
            hello = self._read_hello(node, reply, number, ledger)
            if hello is None:
                return
            reason = refusal(self.registry, self.data, hello)
            if reason is not None:
                self.directory.forget_node(node)
                if self.refused.get(node) == reason:
                    return
                self.refused[node] = reason
                self._refuse(hello.silo, number, reason, ledger)
                refusals.append(
                    self._message(node, REFUSED, Refusal(silo=hello.silo, reason=reason[:4000]))
                )
            else:
                self.refused.pop(node, None)
                if not hello.has_base:
                    needs_theta0.append(node)

        for node in self._exchange(
            self._messages(new, HELLO, self.hello),
            on_hello,
            self.config.hello_timeout,
            number=number,
            ledger=ledger,
        ):
            if self.stop.requested():
                break
            self.directory.forget_node(node)  # greeted again: what it held may have changed
            self._refuse(f"node:{node}", number, "no answer to hello within hello-timeout", ledger)
        if not needs_theta0 and not refusals:
            return
        arrays = tensors_to_arrays(self.base.theta0()) if needs_theta0 else None
        if needs_theta0:
            log.info("sending θ0 (%s…) to %d node(s)", self.base.sha256[:12], len(needs_theta0))

        def on_answer(msg: Message, reply: Message) -> None:
            node = msg.metadata.dst_node_id
            if msg.metadata.message_type == REFUSED:
                return  # the node has logged why; nothing to record
            admitted = self.directory.hellos.get(node)
            self.directory.forget_node(node)  # re-bound from the fresh answer
            hello = self._read_hello(node, reply, number, ledger)
            if hello is None:
                return
            if admitted is None or _facts(hello) != _facts(admitted):
                # Only what was admitted may train: the answer may not restate the data.
                self.directory.forget_node(node)
                self._refuse(
                    hello.silo, number, "the answer to θ0 states other facts than its hello", ledger
                )
            elif not hello.has_base:
                self.directory.forget_node(node)
                self._refuse(hello.silo, number, "θ0 was sent but the node still lacks it", ledger)

        messages = refusals + self._messages(
            needs_theta0, THETA0, self.hello, arrays={THETA0_ARRAYS: arrays}
        )
        for node in self._exchange(
            messages, on_answer, self.config.hello_timeout, number=number, ledger=ledger
        ):
            if node in self.refused:
                log.info("node %s did not acknowledge its refusal", node)
                continue
            silo = self.directory.silo_of(node) or f"node:{node}"
            self.directory.forget_node(node)
            self._refuse(silo, number, "no answer to θ0 within hello-timeout", ledger)

    def _read_hello(
        self, node: int, reply: Message, number: int, ledger: _RoundLedger
    ) -> Hello | None:
        try:
            hello = unpack(_content(reply), REPLY, Hello)
            self.directory.bind(node, hello)
        except TMCError as exc:
            self.directory.forget_node(node)  # a binding from an earlier hello lapses
            self._refuse(f"node:{node}", number, str(exc), ledger)
            return None
        return hello

    def _next_increment(self, node: int, number: int) -> int | None:
        """The first increment this silo has not contributed yet, among those that have
        arrived by round ``number`` (increment i arrives in round i + 1). What it
        contributed before being forgotten and readmitted does not count."""
        hello = self.directory.hellos[node]
        done = set(self.registry.contributed_increments(hello.silo))
        arrived = min(number, hello.num_increments)
        return next((i for i in range(arrived) if i not in done), None)

    # -- training ------------------------------------------------------------------------------

    def _train(self, number: int, plan: dict[int, int], ledger: _RoundLedger) -> None:
        train_config = self.config.train_config()
        messages = [
            self._message(
                node,
                TRAIN,
                TrainInstruction(
                    round=number,
                    increment=increment,
                    base_sha256=self.base.sha256,
                    base_spec_json=self.hello.base_spec_json,
                    data=self.data,
                    train=train_config,
                    encoding=self.config.upload_dtype,
                ),
            )
            for node, increment in sorted(plan.items())
        ]

        def on_component(msg: Message, reply: Message) -> None:
            node = msg.metadata.dst_node_id
            silo = self.directory.silo_of(node) or f"node:{node}"
            component = component_from_content(_content(reply), shapes=self.shapes)
            check_component(
                self.directory.hellos[node],
                component,
                node=node,
                round=number,
                increment=plan[node],
                config=self.config,
            )
            record = self.registry.add(
                component, actor=f"silo:{silo}", expected_silo=silo, round=number
            )
            ledger.accepted.append(record.id)
            ledger.accepted_silos.append(silo)
            ledger.training_seconds.append(max(0.0, component.meta.metrics.get("seconds", 0.0)))
            ledger.upload_bytes.append(content_bytes(reply.content))
            log.info(
                "accepted component %s… of silo %s (%s, %d bytes in its reply)",
                record.id[:12],
                silo,
                component.meta.encoding,
                ledger.upload_bytes[-1],
            )

        for node in self._exchange(
            messages, on_component, self.config.round_timeout, number=number, ledger=ledger
        ):
            silo = self.directory.silo_of(node) or f"node:{node}"
            if self.stop.requested():
                log.warning("stopping: the reply of silo %s is not waited for", silo)
                continue
            self.directory.forget_node(node)  # it must say hello again when it is back
            self._refuse(silo, number, "no reply within round-timeout", ledger)

    def _refuse(self, silo: str, number: int, reason: str, ledger: _RoundLedger) -> None:
        log.warning("round %d: refused %s: %s", number, silo, reason)
        self.registry.reject(silo=silo, round=number, reason=reason)
        ledger.rejected.append(Rejection(silo=silo, reason=reason))

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate_on_server(self, has_version: bool) -> tuple[float | None, dict[int, float]]:
        if not (self.config.evaluate_server and has_version and self.test_set is not None):
            return None, {}
        self.model.load_delta(dict(self.registry.composed_delta()))
        scores = evaluate(self.model, self.test_set)
        return scores.accuracy, scores.per_class

    def _evaluate_federated(
        self, number: int, version: int | None, ledger: _RoundLedger
    ) -> float | None:
        nodes = self.directory.bound_nodes()
        if not (self.config.evaluate_federated and version is not None and nodes):
            return None
        instruction = EvaluateInstruction(
            round=number,
            base_sha256=self.base.sha256,
            base_spec_json=self.hello.base_spec_json,
            data=self.data,
            version=version,
        )
        arrays = tensors_to_arrays(self.registry.composed_delta())
        results: list[EvaluateResult] = []

        def on_result(msg: Message, reply: Message) -> None:
            node = msg.metadata.dst_node_id
            result = unpack(_content(reply), REPLY, EvaluateResult)
            hello = self.directory.hellos.get(node)
            if hello is None:
                raise ProtocolError(f"node {node} answered an evaluation but speaks for no silo")
            check_evaluation(hello, result, node=node)
            results.append(result)

        messages = self._messages(nodes, EVALUATE, instruction, arrays={DELTA: arrays})
        for node in self._exchange(
            messages, on_result, self.config.round_timeout, number=number, ledger=ledger
        ):
            log.warning("evaluation: no answer from node %s within round-timeout", node)
        # Counts are bounded by what each silo declared (≤ MAX_EXAMPLES), so this is exact
        # enough and cannot overflow.
        total = sum(r.num_examples for r in results)
        if total == 0:
            return None
        return math.fsum(r.accuracy * r.num_examples for r in results) / total

    # -- messaging -----------------------------------------------------------------------------

    def _message(
        self, node: int, message_type: str, instruction: object, **arrays: object
    ) -> Message:
        content = RecordDict({INSTRUCTION: pack(instruction)})  # type: ignore[arg-type]
        for key, record in arrays.items():
            content[key] = record  # type: ignore[assignment]
        ttl = max(self.config.round_timeout, self.config.hello_timeout) + 60
        return Message(content, dst_node_id=node, message_type=message_type, ttl=ttl)

    def _messages(
        self,
        nodes: Iterable[int],
        message_type: str,
        instruction: object,
        *,
        arrays: dict[str, object] | None = None,
    ) -> list[Message]:
        return [self._message(node, message_type, instruction, **(arrays or {})) for node in nodes]

    def _exchange(
        self,
        messages: list[Message],
        on_reply: ReplyHandler,
        timeout: float,
        *,
        number: int,
        ledger: _RoundLedger,
    ) -> list[int]:
        """Push ``messages``, hand each reply to ``on_reply`` as it arrives; return the nodes
        that did not answer within ``timeout`` (a message may get no reply at all). Whatever
        handling one reply raises refuses that reply, with the reason, and nothing else."""
        if not messages:
            return []
        sent = set(self.grid.push_messages(messages))
        pending = {m.metadata.message_id: m for m in messages if m.metadata.message_id in sent}
        lost = [m.metadata.dst_node_id for m in messages if m.metadata.message_id not in sent]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline and not self.stop.requested():
            for reply in self.grid.pull_messages(list(pending)):
                original = pending.pop(reply.metadata.reply_to_message_id, None)
                if original is not None:
                    self._guarded(original, reply, on_reply, number, ledger)
            if pending:
                time.sleep(self.poll_interval)
        return lost + [m.metadata.dst_node_id for m in pending.values()]

    def _guarded(
        self,
        original: Message,
        reply: Message,
        on_reply: ReplyHandler,
        number: int,
        ledger: _RoundLedger,
    ) -> None:
        node = original.metadata.dst_node_id
        try:
            on_reply(original, reply)
        except TMCError as exc:
            reason = str(exc)
        except Exception as exc:  # a hostile reply must never stop the round
            log.exception("unexpected failure handling the reply of node %s", node)
            reason = f"unreadable reply ({type(exc).__name__}: {str(exc)[:500]})"
        else:
            return
        silo = self.directory.silo_of(node) or f"node:{node}"
        self._refuse(silo, number, f"{original.metadata.message_type}: {reason}", ledger)


def _facts(hello: Hello) -> Hello:
    """A hello without what θ0's delivery changes."""
    return hello.model_copy(update={"has_base": True})


def _content(reply: Message) -> RecordDict:
    """The reply's content, or a FederationError when the ClientApp answered an error."""
    if reply.has_error():
        raise FederationError(f"ClientApp failed (code {reply.error.code}): {reply.error.reason}")
    return reply.content
