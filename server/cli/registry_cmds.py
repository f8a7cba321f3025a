"""``tmc registry ...``: look into a registry (list, status, verify, audit, versions,
history)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from tmc.server.cli.admin_cmds import (
    CaCertOption,
    InsecureOption,
    OptionalRegistryOption,
    Remote,
    ServerOption,
    TokenFileOption,
    open_target,
)
from tmc.server.cli.options import JsonOption, RegistryOption
from tmc.server.cli.output import EXIT_USAGE, console, emit_json, handle_errors, table
from tmc.server.cli.timeline import current_model, model_events, timeline, version_rows
from tmc.server.federation import RoundSummary, read_history
from tmc.server.registry import Registry

registry_app = typer.Typer(
    help="Inspect a component registry: components, status, integrity, audit log, rounds.",
    no_args_is_help=True,
)

Status = Literal["active", "forgotten", "all"]


@registry_app.command("list")
def list_components(
    registry: OptionalRegistryOption = None,
    silo: Annotated[str | None, typer.Option(help="only this silo's components")] = None,
    status: Annotated[str, typer.Option(help="active | forgotten | all")] = "active",
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """List components: id, silo, round, examples, status, sha256 of the stored file, how
    it was uploaded and, for a DP component, its ε at δ (``--json``: the whole accounting).
    With --server, from an admin API (a silo token lists its own silo only)."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        if status not in ("active", "forgotten", "all"):
            raise typer.BadParameter("status must be active, forgotten or all")
        records = opened.list_components(silo=silo, status=status)  # type: ignore[arg-type]
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "silo": r.silo,
                "round": r.round,
                "increment": r.increment,
                "num_examples": r.num_examples,
                "status": r.status,
                "sha256": r.blob_sha256,
                "norm": r.norm,
                "encoding": r.encoding,
                "payload_bytes": r.payload_bytes,
                "epsilon": None if r.privacy is None else r.privacy.epsilon,
                "privacy": None if r.privacy is None else r.privacy.model_dump(mode="json"),
                "added_at": r.added_at.isoformat(),
            }
            for r in records
        ]
        if as_json:
            emit_json(rows)
            return
        # The status column only when rows can differ (--status all): at 80 columns each
        # column costs the others room.
        shown = ["id", "silo", "round", "incr", "examples", "status", "norm", "upload", "ε"]
        if status != "all":
            shown.remove("status")
        console.print(
            table(
                f"{len(rows)} {status} component(s) in {registry or server}",
                shown,
                [
                    [
                        r["id"][:12] + "…",
                        r["silo"],
                        r["round"],
                        r["increment"],
                        r["num_examples"],
                        *([r["status"]] if status == "all" else []),
                        r["norm"],
                        _upload_cell(r["encoding"], r["payload_bytes"]),
                        _epsilon_cell(r["privacy"]),
                    ]
                    for r in rows
                ],
            )
        )


def _upload_cell(encoding: str, payload_bytes: int | None) -> str:
    """The upload's encoding and size, e.g. "float32 366.5 KiB" (--json has the bytes)."""
    if payload_bytes is None:
        return encoding
    if payload_bytes < 1024:
        return f"{encoding} {payload_bytes} B"
    kib = payload_bytes / 1024
    return f"{encoding} {kib:.1f} KiB" if kib < 1024 else f"{encoding} {kib / 1024:.1f} MiB"


def _epsilon_cell(privacy: dict[str, Any] | None) -> str:
    """ε at δ of a DP component; "-" for one trained without DP."""
    if privacy is None:
        return "-"
    return f"{privacy['epsilon']:.3g} (δ {privacy['delta']:.0e})"


@registry_app.command("status")
def status(
    registry: OptionalRegistryOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Current version, counts, silos. With --server, from an admin API (operator token)."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        state = opened.status()
        silos = opened.silos()
        if as_json:
            emit_json(
                {
                    **state.model_dump(mode="json"),
                    "silo_summaries": [s.model_dump(mode="json") for s in silos],
                }
            )
            return
        console.print(
            table(
                f"Registry {registry or server}",
                ["field", "value"],
                [[k, v] for k, v in state.model_dump(mode="json").items()],
            )
        )
        console.print(
            table(
                "Silos",
                ["silo", "active", "forgotten", "examples", "classes", "rounds", "refused since"],
                [
                    [
                        s.silo,
                        s.active,
                        s.forgotten,
                        s.num_examples,
                        list(s.classes),
                        list(s.rounds),
                        f"{s.forgotten_on:%Y-%m-%d %H:%M} UTC: {s.forgotten_reason}"
                        if s.forgotten_on is not None
                        else "",
                    ]
                    for s in silos
                ],
            )
        )


@registry_app.command("verify")
def verify(registry: RegistryOption, as_json: JsonOption = False) -> None:
    """Exit 0 iff every blob matches its hash and the current version equals a
    recomposition from scratch (bit for bit); problems are listed otherwise."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        report = opened.verify(actor="cli")
    if as_json:
        emit_json(report.model_dump(mode="json"))
    else:
        verdict = "[green]ok[/]" if report.ok else "[bold red]FAILED[/]"
        console.print(
            f"verify {verdict}: {report.components_checked} components, "
            f"{report.versions_checked} versions, {report.audit_events_checked} audit events"
        )
        for problem in report.problems:
            console.print(f"  problem: {problem}", highlight=False)
        for item in report.garbage:
            console.print(f"  leftover (removed on next open): {item}", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_USAGE)


@registry_app.command("audit")
def audit(
    registry: RegistryOption,
    out: Annotated[Path | None, typer.Option(help="write the whole log to this file")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json | csv (with --out)")] = "json",
    as_json: JsonOption = False,
) -> None:
    """The append-only audit log: who did what, when, with which hashes."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        if out is not None:
            if fmt not in ("json", "csv"):
                raise typer.BadParameter("format must be json or csv")
            count = opened.export_audit(out, fmt)  # type: ignore[arg-type]
            console.print(f"wrote {count} audit events to {out}")
            return
        events = opened.audit_log()
        if as_json:
            emit_json([e.model_dump(mode="json") for e in events])
            return
        console.print(
            table(
                f"Audit log of {registry}",
                ["#", "at", "actor", "action", "subject", "details"],
                [
                    [
                        e.seq,
                        e.at.isoformat(timespec="seconds"),
                        e.actor,
                        e.action,
                        # silo and short component id in one column: room for the details
                        " ".join(s for s in (e.silo, (e.component_id or "")[:12]) if s),
                        json.dumps(e.details, ensure_ascii=False, separators=(", ", ": ")),
                    ]
                    for e in events
                ],
            )
        )


@registry_app.command("versions")
def versions(registry: RegistryOption, as_json: JsonOption = False) -> None:
    """Every model version: number, time, round, reason, actor, components, silos,
    weighting, purged (its Δ deleted by a forget), accuracy (from the round that made it),
    and which one is current."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        rows = version_rows(opened, read_history(registry))
        if as_json:
            emit_json(rows)
            return
        console.print(
            table(
                f"{len(rows)} version(s) of {registry}",
                # No round column: the reason names the round that made a version.
                ["", "version", "created", "components", "silos", "accuracy", "reason"],
                [
                    [
                        "current" if r["current"] else ("purged" if r["purged"] else ""),
                        r["number"],
                        r["created_at"][:19],
                        r["components"],
                        ", ".join(r["silos"]),
                        r["accuracy"],
                        r["reason"],
                    ]
                    for r in rows
                ],
            )
        )


@registry_app.command("history")
def history(
    registry: RegistryOption,
    plot: Annotated[Path | None, typer.Option(help="save accuracy per round as a PNG")] = None,
    as_json: JsonOption = False,
) -> None:
    """Rounds run against this registry (components, accuracy, refusals), interleaved in
    time order with forgets and readmissions (from the audit log), and the current model."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        rounds = read_history(registry)
        events = model_events(opened.audit_log())
        current = current_model(opened)
        if plot is not None:
            from tmc.server.cli.plots import plot_history

            plot_history(rounds, plot)
        if as_json:
            emit_json(
                {
                    "rounds": [r.model_dump(mode="json") for r in rounds],
                    "events": [{**e, "at": e["at"].isoformat()} for e in events],
                    "current": current,
                }
            )
            return
        console.print(
            table(
                f"History of {registry}",
                ["at", "event", "details", "components", "version", "accuracy", "federated"],
                [_history_row(item) for _, item in timeline(rounds, events)],
            )
        )
        if current is None:
            console.print("current model: none (no version committed yet)")
        else:
            console.print(
                f"current model: version {current['version']}, {current['components']} "
                f"component(s) of {len(current['silos'])} silo(s) ({', '.join(current['silos'])})",
                highlight=False,
            )
        if plot is not None:
            console.print(f"plot written to {plot}")


def _history_row(item: RoundSummary | dict[str, Any]) -> list[Any]:
    if isinstance(item, RoundSummary):
        details = (
            f"run {item.run_id % 100_000}: {len(item.accepted)} new, {len(item.rejected)} "
            f"refused, {len(item.idle)} idle, {item.seconds:.1f} s"
        )
        return [
            item.finished_at.isoformat(timespec="seconds"),
            f"round {item.round}",
            details,
            item.components,
            item.version,
            item.accuracy,
            item.federated_accuracy,
        ]
    at = item["at"].isoformat(timespec="seconds")
    reason = f": {item['reason']}" if item["reason"] else ""
    if item["action"] == "forget":
        details = f"{item['components']} component(s) removed by {item['actor']}{reason}"
        return [at, f"forget {item['silo']}", details, None, item["version"], None, None]
    details = f"readmitted by {item['actor']}{reason}"
    return [at, f"readmit {item['silo']}", details, None, None, None, None]
