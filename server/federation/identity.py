"""Which node speaks for which silo.

The registry is keyed by silo name, never by Flower node id (a node id changes when an
unauthenticated SuperNode restarts). With SuperNode authentication the SuperLink knows
each node's registered name, and that name *is* the silo: a node claiming another silo is
refused. Without it (simulation, or a deployment that chose no authentication) the first
claim of a silo in a run binds it to that node, and a second node claiming the same silo
in the same run is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tmc.common.errors import AuthError
from tmc.common.federation import Hello


@dataclass
class SiloDirectory:
    """Node id ↔ silo bindings for one run, checked against registered node names."""

    require_registered: bool = False
    registered_names: dict[int, str] = field(default_factory=dict)
    hellos: dict[int, Hello] = field(default_factory=dict)

    def update_registered(self, nodes: Iterable[tuple[int, str]]) -> None:
        """Record the names the SuperLink reports for authenticated nodes."""
        for node_id, name in nodes:
            if name:
                self.registered_names[node_id] = name

    def bind(self, node_id: int, hello: Hello) -> None:
        """Bind ``node_id`` to the silo it claims, or raise :class:`AuthError` saying why not."""
        registered = self.registered_names.get(node_id)
        if registered is not None and registered != hello.silo:
            raise AuthError(
                f"node {node_id} is registered as {registered!r} but claims silo {hello.silo!r}"
            )
        if registered is None and self.require_registered:
            raise AuthError(
                f"node {node_id} claims silo {hello.silo!r} but has no registered name; "
                "this federation requires authenticated SuperNodes"
            )
        for other, known in self.hellos.items():
            if other != node_id and known.silo == hello.silo:
                raise AuthError(
                    f"silo {hello.silo!r} is already served by node {other} in this run; "
                    f"node {node_id} cannot claim it too"
                )
        self.hellos[node_id] = hello

    def silo_of(self, node_id: int) -> str | None:
        hello = self.hellos.get(node_id)
        return hello.silo if hello is not None else None

    def forget_node(self, node_id: int) -> None:
        self.hellos.pop(node_id, None)

    def bound_nodes(self) -> list[int]:
        return sorted(self.hellos, key=lambda n: self.hellos[n].silo)
