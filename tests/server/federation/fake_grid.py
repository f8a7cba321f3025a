"""An in-process Grid for testing the ServerApp's round logic without Ray.

Messages are delivered to real ClientApps synchronously when pushed; replies can be
released in any order (``order``), delayed forever (``silent``), or rewritten on the way
(``tamper``), which is how arrival order, late silos and hostile replies are tested.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

Tamper = Callable[[int, Message], Message]


@dataclass
class FakeNode:
    node_id: int
    app: ClientApp
    context: Context
    name: str = ""


@dataclass
class FakeGrid(Grid):
    nodes: dict[int, FakeNode] = field(default_factory=dict)
    silent: set[int] = field(default_factory=set)
    tamper: Tamper | None = None
    order: Callable[[list[Message]], list[Message]] | None = None
    _replies: dict[str, Message] = field(default_factory=dict)

    # Grid's abstract API -----------------------------------------------------------------

    def set_run(self, run: object) -> None:  # type: ignore[override]
        return None

    @property
    def run(self) -> object:  # type: ignore[override]
        return None

    def create_message(self, *args: object, **kwargs: object) -> Message:  # type: ignore[override]
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def get_nodes(self) -> Iterable[object]:  # type: ignore[override]
        from flwr.proto.node_pb2 import NodeInfo

        return [NodeInfo(node_id=n.node_id, name=n.name) for n in self.nodes.values()]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            ids.append(msg.metadata.message_id)
            node = self.nodes.get(msg.metadata.dst_node_id)
            if node is None or node.node_id in self.silent:
                continue
            reply = node.app(msg, node.context)
            if self.tamper is not None:
                reply = self.tamper(node.node_id, reply)
            self._replies[msg.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        ready = [self._replies.pop(i) for i in list(message_ids) if i in self._replies]
        return self.order(ready) if self.order is not None else ready

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def simulated_node(node_id: int, partition: int, partitions: int, app: ClientApp) -> FakeNode:
    context = Context(
        run_id=1,
        node_id=node_id,
        node_config={"partition-id": partition, "num-partitions": partitions},
        state=RecordDict(),
        run_config={},
    )
    return FakeNode(node_id=node_id, app=app, context=context)
