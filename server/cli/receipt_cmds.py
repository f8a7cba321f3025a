"""``tmc receipt``: check a forget receipt offline; show the key that signs them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tmc.common.errors import ConfigError
from tmc.common.receipts import check_receipt, parse_receipt
from tmc.server.cli.options import JsonOption
from tmc.server.cli.output import console, emit_json, handle_errors
from tmc.server.receipts import (
    ReceiptSigner,
    check_against_export,
    check_against_registry,
    registry_public_key,
)
from tmc.server.registry import Registry

receipt_app = typer.Typer(
    help="Forget receipts: check one offline, show the key that signs them.",
    no_args_is_help=True,
)


@receipt_app.command("verify")
def verify(
    receipt: Annotated[Path, typer.Argument(help="the receipt (JSON) a forget returned")],
    public_key: Annotated[
        str | None,
        typer.Option(help="the server's key (hex, `tmc receipt key`): refuse any other signer"),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(help="also check the registry: the new version recomposes without them"),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="also check an export (`tmc export`) of the new version"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a forget receipt with no network: the signature, and a proof for each removed
    component that it is not in the new version's Merkle tree. With --registry, also that
    the new version holds exactly those components and its Δ is their exact composition;
    with --model, that the export is that version. Exits 2, naming what fails, otherwise."""
    with handle_errors(as_json=as_json):
        try:
            text = receipt.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {receipt}: {exc.strerror}") from exc
        parsed = parse_receipt(text)
        if public_key is None and registry is not None:
            public_key = registry_public_key(registry)  # the registry's own key, if it has one
        check_receipt(parsed, public_key=public_key)
        checked = ["signature", f"absence of {len(parsed.removed)} removed component(s)"]
        if registry is not None:
            with Registry.open(registry, actor="cli") as opened:
                check_against_registry(parsed, opened)
            checked.append(f"registry: version {parsed.after.number} recomposes without them")
        if model is not None:
            check_against_export(parsed, model)
            checked.append(f"export {model.name} is version {parsed.after.number}")
        pinned = public_key is not None
        if as_json:
            emit_json(
                {
                    "ok": True,
                    "checked": checked,
                    "key_pinned": pinned,
                    "public_key": parsed.public_key,
                    "before": parsed.before.number,
                    "after": parsed.after.number,
                    "removed": parsed.removed,
                }
            )
            return
        console.print(
            f"ok: version {parsed.before.number} -> {parsed.after.number}, "
            f"{len(parsed.removed)} component(s) removed"
        )
        for item in checked:
            console.print(f"  checked {item}")
        if not pinned:
            console.print("  note: key not pinned (give --public-key or --registry)")


@receipt_app.command("key")
def key(
    registry: Annotated[Path, typer.Option("--registry", help="registry folder")],
    signing_key: Annotated[
        Path | None, typer.Option(help="a key file instead of the registry's own")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The public key (hex) that signs this registry's forget receipts, for silos to pin."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        public = ReceiptSigner.for_registry(opened.root, signing_key).public_key
        if as_json:
            emit_json({"public_key": public})
            return
        console.print(public)


__all__ = ["receipt_app"]
