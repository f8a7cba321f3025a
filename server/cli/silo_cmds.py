"""``tmc silo readmit``: the operator lifts a forgotten silo's tombstone.

``tmc silo start`` (the silo's side) lives in ``client.cli``: a silo node never needs the
server's code. Readmission is the server's: it writes the registry (or calls the admin
API), so it is added to the same ``tmc silo`` group from here.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from tmc.common.components.component import SILO_PATTERN
from tmc.common.errors import ConfigError
from tmc.server.cli.admin_cmds import (
    CaCertOption,
    InsecureOption,
    OptionalRegistryOption,
    Remote,
    ServerOption,
    TokenFileOption,
    open_target,
)
from tmc.server.cli.options import JsonOption
from tmc.server.cli.output import console, emit_json, handle_errors
from tmc.server.registry import Registry


def readmit(
    silo: Annotated[str, typer.Argument(help="the forgotten silo to admit again")],
    reason: Annotated[str, typer.Option(help="why (recorded in the audit log)")] = "",
    registry: OptionalRegistryOption = None,
    actor: Annotated[
        str, typer.Option(help="who asks (audit log; with --server the token decides)")
    ] = "operator",
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Readmit a silo that was forgotten: its next contributions are accepted again, and it
    trains from its first increment (what it gave before it was forgotten stays deleted).
    Operator only; audited. With --server, through an admin API (operator token)."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        if not re.fullmatch(SILO_PATTERN, silo):
            raise ConfigError(f"{silo!r} is not a valid silo name")
        if isinstance(opened, Registry):
            lifted = opened.readmit(silo, actor=actor, reason=reason)
            forgotten_at, readmitted_at = lifted.forgotten_at, lifted.readmitted_at
        else:
            _, forgotten_at, readmitted_at = opened.readmit(silo, reason=reason)
        payload = {
            "silo": silo,
            "forgotten_at": forgotten_at.isoformat(),
            "readmitted_at": readmitted_at.isoformat() if readmitted_at else None,
        }
        if as_json:
            emit_json(payload)
            return
        console.print(
            f"readmitted {silo} (forgotten on {forgotten_at:%Y-%m-%d %H:%M} UTC): its next "
            "contributions are accepted",
            highlight=False,
        )


__all__ = ["readmit"]
