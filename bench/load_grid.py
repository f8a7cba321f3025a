"""Many silos in one process: an in-process Grid that delivers each message to a real
ClientApp when it is pushed, timing the silo side apart from the server side.

Flower's simulation engine (Ray) costs about a Ray actor per concurrent silo and cannot
run 1,000 silos on a 2-core machine within minutes; this harness runs the real ServerApp
loop (``run_federation``) and the real ClientApp, one silo after another, so the time
of a round splits into what the silos did (training, replying) and what the server did
(hello, admission, θ0, validation, registry writes, composition), per silo.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


@dataclass
class _Node:
    node_id: int
    context: Context


@dataclass
class InProcessGrid(Grid):
    """Every node runs ``app``; ``client_seconds`` adds up the time spent inside it."""

    app: ClientApp
    nodes: dict[int, _Node] = field(default_factory=dict)
    client_seconds: float = 0.0
    _replies: dict[str, Message] = field(default_factory=dict)

    @classmethod
    def with_silos(cls, app: ClientApp, silos: int, cache_dir: str) -> InProcessGrid:
        # Messages built outside a Flower runtime need the identity a runtime would set.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        grid = cls(app=app)
        for partition in range(silos):
            node_id = 1000 + partition
            node_config: dict[str, Any] = {
                "partition-id": partition,
                "num-partitions": silos,
                "cache-dir": f"{cache_dir}/node-{partition}",
            }
            context = Context(
                run_id=1,
                node_id=node_id,
                node_config=node_config,
                state=RecordDict(),
                run_config={},
            )
            grid.nodes[node_id] = _Node(node_id, context)
        return grid

    def set_run(self, run: object) -> None:
        return None

    @property
    def run(self) -> object:  # type: ignore[override]
        return None

    def create_message(self, *args: object, **kwargs: object) -> Message:
        raise NotImplementedError("the ServerApp builds its messages itself")

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def get_nodes(self) -> Iterable[object]:  # type: ignore[override]
        from flwr.proto.node_pb2 import NodeInfo

        return [NodeInfo(node_id=node_id, name="") for node_id in self.nodes]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            ids.append(message.metadata.message_id)
            node = self.nodes.get(message.metadata.dst_node_id)
            if node is None:
                continue
            start = time.perf_counter()
            reply = self.app(message, node.context)
            self.client_seconds += time.perf_counter() - start
            self._replies[message.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


__all__ = ["InProcessGrid"]
