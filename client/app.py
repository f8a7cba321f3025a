"""The ClientApp: what runs on a silo's node.

It answers five messages (see ``common.federation.messages``): ``query.hello`` (who am I,
what data do I hold, do I hold θ0), ``query.theta0`` (keep θ0, verified),
``query.refused`` (the server does not admit this silo: log why), ``train.component``
(train one tangent component on one increment of local data, on CUDA when present, and
reply with the tangent arrays and metadata only) and ``evaluate`` (score the composed model
on local test data). Nothing else leaves the node: no samples, no gradients, no raw labels
beyond class names with their counts and a label histogram.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from tmc.client.node import NodeSettings
from tmc.client.silo import SiloSource, open_silo
from tmc.client.theta0_cache import Theta0Cache, node_cache_dir
from tmc.common.components import Component, ComponentMeta, Delta, payload_bytes
from tmc.common.data import DataSpec
from tmc.common.device import resolve_device
from tmc.common.errors import ProtocolError, TMCError
from tmc.common.federation import (
    DELTA,
    INSTRUCTION,
    REPLY,
    THETA0_ARRAYS,
    EvaluateInstruction,
    EvaluateResult,
    Hello,
    HelloRequest,
    Refusal,
    RefusalAck,
    TrainInstruction,
    arrays_to_tensors,
    component_to_content,
    pack,
    unpack,
)
from tmc.common.federation.config import FederationConfig
from tmc.common.logs import handler, log_format, log_level
from tmc.common.models import BaseModelSpec, MaterializedBase
from tmc.common.tangent import TangentModel
from tmc.common.training import TrainConfig, evaluate, train_tangent

log = logging.getLogger(__name__)


class NodeRuntime:
    """What a ClientApp process keeps between messages (simulation actors live long;
    deployment processes live for one message, so everything is also on disk)."""

    def __init__(self, run_config_overrides: Mapping[str, Any] | None) -> None:
        self.overrides = dict(run_config_overrides or {})
        self._silos: dict[str, SiloSource] = {}
        self._caches: dict[str, Theta0Cache] = {}
        self._models: dict[str, TangentModel] = {}

    def settings(self, context: Context) -> NodeSettings:
        settings = NodeSettings.from_node_config(context.node_config)
        if settings.data_path is not None:
            _log_to_node(logging.INFO)
        return settings

    def config(self, context: Context) -> FederationConfig:
        return FederationConfig.from_run_config({**dict(context.run_config), **self.overrides})

    def silo(self, context: Context, data: DataSpec, *, fresh: bool = False) -> SiloSource:
        """The node's silo read in the federation's label space and input spec; ``fresh``
        reads a silo folder again (at hello: new increments may have been dropped in)."""
        settings, config = self.settings(context), self.config(context)
        key = settings.model_dump_json() + config.model_dump_json() + data.model_dump_json()
        if fresh and settings.data_path is not None:
            self._silos.pop(key, None)
        if key not in self._silos:
            self._silos[key] = open_silo(settings, config, data)
        return self._silos[key]

    def cache(self, context: Context) -> Theta0Cache:
        directory = node_cache_dir(self.settings(context).cache_dir)
        key = str(directory)
        if key not in self._caches:
            self._caches[key] = Theta0Cache(directory)
        return self._caches[key]

    def base(self, context: Context, spec_json: str, sha256: str) -> MaterializedBase:
        spec = BaseModelSpec.model_validate_json(spec_json)
        return self.cache(context).load(spec, sha256)

    def model(self, base: MaterializedBase) -> TangentModel:
        if base.sha256 not in self._models:
            self._models[base.sha256] = TangentModel(base.network, base.tangent_names)
        return self._models[base.sha256]

    def device(self, context: Context, requested: str) -> str:
        """The node's own ``device`` setting wins: it knows its hardware."""
        return self.settings(context).device or requested


def _log_to_node(level: int) -> None:
    """A deployed node's ClientApp runs in a process of its own whose stderr is the
    SuperNode's log: say there, at ``level``, what this silo does and why it is refused. (In
    simulation the nodes' INFO lines would only repeat the server's, so they stay quiet.)"""
    logger = logging.getLogger("tmc.client")
    if any(getattr(h, "tmc_node", False) for h in logger.handlers):
        return
    # TMC_LOG_FORMAT / TMC_LOG_LEVEL in the SuperNode's environment reach this process.
    node_handler = handler(log_format(), sys.stderr, "tmc %(levelname)s: %(message)s")
    node_handler.tmc_node = True  # type: ignore[attr-defined]
    logger.addHandler(node_handler)
    logger.setLevel(log_level(default=level))


def _own_privacy(config: TrainConfig) -> TrainConfig:
    """The DP-SGD noise and sampling are seeded on this node, from its OS's entropy: a seed
    chosen by the server would let it know the noise and undo the privacy."""
    privacy = config.privacy
    if privacy is None or privacy.noise_seed is None:
        return config
    log.warning("ignoring the DP noise seed the server sent: the silo draws its own noise")
    return config.model_copy(update={"privacy": privacy.model_copy(update={"noise_seed": None})})


def _reply(msg: Message, content: RecordDict) -> Message:
    return Message(content, reply_to=msg)


Handler = Callable[[Message, Context], Message]


def _refusing(handler: Handler) -> Handler:
    """``handler``, answering a refusal of the project's (a hostile data folder, a bad
    message) with one log line and an error reply carrying the reason, instead of a
    traceback here and another in the server's log. Anything else is a bug: it propagates."""

    @functools.wraps(handler)
    def guarded(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except TMCError as exc:
            log.error("error: %s (answering %s)", exc, msg.metadata.message_type)
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=str(exc)), reply_to=msg
            )

    return guarded


def make_client_app(run_config_overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp; ``run_config_overrides`` stand in for Flower's run config when the
    simulation runs in-process (``tmc simulate``)."""
    app = ClientApp()
    runtime = NodeRuntime(run_config_overrides)

    def introduce(context: Context, request: HelloRequest) -> RecordDict:
        silo = runtime.silo(context, request.data, fresh=True)
        answer = Hello(
            silo=silo.name,
            has_base=runtime.cache(context).has(request.base_sha256),
            source=silo.source,
            num_increments=len(silo.increments),
            increment_sizes=silo.increment_sizes,
            increment_fingerprints=silo.increment_fingerprints,
            classes=silo.classes,
            class_names=silo.class_names,
            class_counts=silo.class_counts,
            channels=silo.channels,
            image_size=silo.image_size,
            partition=silo.partition,
            num_test_examples=len(silo.test) if silo.test is not None else 0,
            device=str(resolve_device(runtime.device(context, "auto"))),
            problems=silo.problems,
        )
        log.info(
            "silo %s says hello: %s data, classes %s, %d increment(s) (holds θ0: %s)",
            answer.silo,
            answer.source,
            dict(zip(answer.class_names, answer.class_counts, strict=True)),
            answer.num_increments,
            answer.has_base,
        )
        for problem in silo.problems:
            log.error("silo %s does not fit this federation: %s", silo.name, problem)
        return RecordDict({REPLY: pack(answer)})

    @app.query("hello")
    @_refusing
    def hello(msg: Message, context: Context) -> Message:
        request = unpack(msg.content, INSTRUCTION, HelloRequest)
        return _reply(msg, introduce(context, request))

    @app.query("theta0")
    @_refusing
    def theta0(msg: Message, context: Context) -> Message:
        request = unpack(msg.content, INSTRUCTION, HelloRequest)
        arrays = msg.content.array_records.get(THETA0_ARRAYS)
        if arrays is None:
            raise ProtocolError("query.theta0 carries no θ0 arrays")
        runtime.cache(context).store(arrays_to_tensors(arrays), request.base_sha256)
        runtime.base(context, request.base_spec_json, request.base_sha256)  # it must load
        return _reply(msg, introduce(context, request))

    @app.query("refused")
    @_refusing
    def refused(msg: Message, context: Context) -> Message:
        refusal = unpack(msg.content, INSTRUCTION, Refusal)
        runtime.settings(context)  # sets up the node's log
        # ERROR level: the silo's operator must see it; this node will not train this run.
        log.error("the server refused silo %s: %s", refusal.silo, refusal.reason)
        return _reply(msg, RecordDict({REPLY: pack(RefusalAck(silo=refusal.silo))}))

    @app.train("component")
    @_refusing
    def train(msg: Message, context: Context) -> Message:
        instruction = unpack(msg.content, INSTRUCTION, TrainInstruction)
        base = runtime.base(context, instruction.base_spec_json, instruction.base_sha256)
        silo = runtime.silo(context, instruction.data)
        shard = silo.train_shard(instruction.increment)
        config = _own_privacy(instruction.train).model_copy(
            update={"device": runtime.device(context, instruction.train.device)}
        )
        log.info(
            "silo %s: training increment %d (%d examples) on %s",
            silo.name,
            instruction.increment,
            len(shard),
            resolve_device(config.device),
        )
        delta, report = train_tangent(runtime.model(base), shard, config)
        meta = ComponentMeta(
            base_sha256=base.sha256,
            silo=silo.name,
            round=instruction.round,
            increment=instruction.increment,
            classes=tuple(report.label_histogram),
            num_examples=report.num_examples,
            metrics={"loss": report.final_loss, "seconds": report.seconds},
            data_fingerprint=silo.fingerprint(instruction.increment),
            encoding=instruction.encoding,
            privacy=report.privacy,
        )
        component = Component.encoded(delta, meta)
        content = component_to_content(component)
        if report.privacy is not None:
            log.info(
                "silo %s: DP-SGD gives (ε = %.3g, δ = %.3g) with noise multiplier %.3g",
                silo.name,
                report.privacy.epsilon,
                report.privacy.delta,
                report.privacy.noise_multiplier,
            )
        log.info(
            "silo %s: component %s… trained in %.1f s (loss %.4g), uploading %d bytes (%s)",
            silo.name,
            component.id[:12],
            report.seconds,
            report.final_loss,
            payload_bytes(component.payload),
            instruction.encoding,
        )
        content["metrics"] = MetricRecord(
            {
                "num-examples": report.num_examples,
                "loss": report.final_loss,
                "seconds": report.seconds,
                "payload-bytes": payload_bytes(component.payload),
                **{f"label-{c}": n for c, n in report.label_histogram.items()},
            }
        )
        content["device"] = ConfigRecord({"device": report.device})
        return _reply(msg, content)

    @app.evaluate()
    @_refusing
    def evaluate_composed(msg: Message, context: Context) -> Message:
        instruction = unpack(msg.content, INSTRUCTION, EvaluateInstruction)
        base = runtime.base(context, instruction.base_spec_json, instruction.base_sha256)
        arrays = msg.content.array_records.get(DELTA)
        if arrays is None:
            raise ProtocolError("evaluate carries no composed Δ")
        model = runtime.model(base)
        shapes = model.delta_shapes()
        delta = Delta(arrays_to_tensors(arrays, shapes=shapes, dtype="float32"))
        silo = runtime.silo(context, instruction.data)
        if silo.test is None:
            result = EvaluateResult(silo=silo.name, accuracy=0.0, num_examples=0)
        else:
            model.load_delta(delta)
            device = str(resolve_device(runtime.device(context, "auto")))
            scores = evaluate(model, silo.test, device=device)
            result = EvaluateResult(
                silo=silo.name, accuracy=scores.accuracy, num_examples=scores.num_examples
            )
        metrics = MetricRecord({"accuracy": result.accuracy, "num-examples": result.num_examples})
        return _reply(msg, RecordDict({REPLY: pack(result), "metrics": metrics}))

    return app


app = make_client_app()
"""The ClientApp Flower loads (``[tool.flwr.app.components] clientapp``)."""

__all__ = ["NodeRuntime", "app", "make_client_app"]
