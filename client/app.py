"""The ClientApp: what runs on a silo's node.

It answers four messages (see ``common.federation.messages``): ``query.hello`` (who am I,
do I hold θ0), ``query.theta0`` (keep θ0, verified), ``train.component`` (train one
tangent component on one increment of local data, on CUDA when present, and reply with
the tangent arrays and metadata only) and ``evaluate`` (score the composed model on local
test data). Nothing else leaves the node: no samples, no gradients, no raw labels beyond a
label histogram.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.node import NodeSettings
from client.silo import SiloSource, open_silo
from client.theta0_cache import Theta0Cache, node_cache_dir
from common.components import Component, ComponentMeta, Delta
from common.device import resolve_device
from common.errors import ProtocolError
from common.federation import (
    DELTA,
    INSTRUCTION,
    REPLY,
    THETA0_ARRAYS,
    EvaluateInstruction,
    EvaluateResult,
    Hello,
    HelloRequest,
    TrainInstruction,
    arrays_to_tensors,
    component_to_content,
    pack,
    unpack,
)
from common.federation.config import FederationConfig
from common.models import BaseModelSpec, MaterializedBase
from common.tangent import TangentModel
from common.training import evaluate, train_tangent

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
        return NodeSettings.from_node_config(context.node_config)

    def config(self, context: Context) -> FederationConfig:
        return FederationConfig.from_run_config({**dict(context.run_config), **self.overrides})

    def silo(self, context: Context) -> SiloSource:
        settings, config = self.settings(context), self.config(context)
        key = settings.model_dump_json() + config.model_dump_json()
        if key not in self._silos:
            self._silos[key] = open_silo(settings, config)
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


def _reply(msg: Message, content: RecordDict) -> Message:
    return Message(content, reply_to=msg)


def make_client_app(run_config_overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp; ``run_config_overrides`` stand in for Flower's run config when the
    simulation runs in-process (``tmc simulate``)."""
    app = ClientApp()
    runtime = NodeRuntime(run_config_overrides)

    def introduce(context: Context, request: HelloRequest) -> RecordDict:
        silo = runtime.silo(context)
        answer = Hello(
            silo=silo.name,
            has_base=runtime.cache(context).has(request.base_sha256),
            num_increments=len(silo.increments),
            increment_sizes=silo.increment_sizes,
            classes=silo.classes,
            num_test_examples=len(silo.test) if silo.test is not None else 0,
            device=str(resolve_device(runtime.device(context, "auto"))),
        )
        log.info("silo %s says hello (holds θ0: %s)", answer.silo, answer.has_base)
        return RecordDict({REPLY: pack(answer)})

    @app.query("hello")
    def hello(msg: Message, context: Context) -> Message:
        request = unpack(msg.content, INSTRUCTION, HelloRequest)
        return _reply(msg, introduce(context, request))

    @app.query("theta0")
    def theta0(msg: Message, context: Context) -> Message:
        request = unpack(msg.content, INSTRUCTION, HelloRequest)
        arrays = msg.content.array_records.get(THETA0_ARRAYS)
        if arrays is None:
            raise ProtocolError("query.theta0 carries no θ0 arrays")
        runtime.cache(context).store(arrays_to_tensors(arrays), request.base_sha256)
        runtime.base(context, request.base_spec_json, request.base_sha256)  # it must load
        return _reply(msg, introduce(context, request))

    @app.train("component")
    def train(msg: Message, context: Context) -> Message:
        instruction = unpack(msg.content, INSTRUCTION, TrainInstruction)
        base = runtime.base(context, instruction.base_spec_json, instruction.base_sha256)
        silo = runtime.silo(context)
        shard = silo.train_shard(instruction.increment)
        config = instruction.train.model_copy(
            update={"device": runtime.device(context, instruction.train.device)}
        )
        log.info(
            "silo %s: training increment %d (%d examples) on %s",
            silo.name,
            instruction.increment,
            len(shard),
            config.device,
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
        )
        content = component_to_content(Component(delta, meta))
        content["metrics"] = MetricRecord(
            {
                "num-examples": report.num_examples,
                "loss": report.final_loss,
                "seconds": report.seconds,
                **{f"label-{c}": n for c, n in report.label_histogram.items()},
            }
        )
        content["device"] = ConfigRecord({"device": report.device})
        return _reply(msg, content)

    @app.evaluate()
    def evaluate_composed(msg: Message, context: Context) -> Message:
        instruction = unpack(msg.content, INSTRUCTION, EvaluateInstruction)
        base = runtime.base(context, instruction.base_spec_json, instruction.base_sha256)
        arrays = msg.content.array_records.get(DELTA)
        if arrays is None:
            raise ProtocolError("evaluate carries no composed Δ")
        model = runtime.model(base)
        shapes = model.delta_shapes()
        delta = Delta(arrays_to_tensors(arrays, shapes=shapes, dtype="float32"))
        silo = runtime.silo(context)
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
