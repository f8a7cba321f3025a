"""``tmc registry value``: what each silo's contribution is worth, and a forget's preview,
from a local registry or (``--server``) an admin API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tmc.common.data.spec import DatasetName
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
from tmc.server.cli.output import console, emit_json, handle_errors, table
from tmc.server.registry import Registry
from tmc.server.registry.model_file import require_data
from tmc.server.valuation import (
    EXACT_LIMIT,
    kept_valuations,
    preview_forget,
    value_version,
)
from tmc.server.valuation.split import evaluation_split


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def value(
    registry: OptionalRegistryOption = None,
    dataset: Annotated[
        DatasetName, typer.Option(help="value on this dataset's test split")
    ] = "digits",
    dataset_root: Annotated[
        Path | None, typer.Option(help="for cifar/imagefolder (with --server: on the server)")
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="a past version (default: current)")
    ] = None,
    what_if: Annotated[
        str | None,
        typer.Option(
            "--what-if",
            metavar="SILO",
            help="preview forgetting SILO: accuracy and per-class accuracy after it; "
            "nothing is removed",
        ),
    ] = None,
    history: Annotated[
        str | None,
        typer.Option(
            "--history", metavar="SILO", help="SILO's kept values at every valued version"
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(min=2, help=f"random orders for Shapley values beyond {EXACT_LIMIT} silos"),
    ] = 200,
    seed: Annotated[int, typer.Option(help="seed of the random orders")] = 0,
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Each silo's leave-one-out and Shapley value (accuracy points on a test split the
    server holds), computed exactly from each component's cached logits: the model is
    linear in Δ, so any subset's composition needs no new forward pass. Shapley values are
    exact up to 15 silos, sampled beyond (± standard error). Values are kept per version.
    With --server, computed by an admin API on its registry (operator token)."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        if history is not None:
            if not isinstance(opened, Registry):
                raise ConfigError("--history reads the kept values: use --registry DIR")
            kept = kept_valuations(opened.root, silo=history)
            rows = [
                (
                    v.version,
                    *next((s.leave_one_out, s.shapley) for s in v.silos if s.silo == history),
                )
                for v in kept
            ]
            if as_json:
                emit_json(
                    {
                        "silo": history,
                        "versions": [
                            {"version": r[0], "leave_one_out": r[1], "shapley": r[2]} for r in rows
                        ],
                    }
                )
                return
            console.print(
                table(
                    f"{history}: kept values (accuracy points)",
                    ["version", "leave-one-out", "Shapley"],
                    [(r[0], _points(r[1]), _points(r[2])) for r in rows],
                )
            )
            return
        if what_if is not None:
            if isinstance(opened, Registry):
                split = evaluation_split(opened, dataset, dataset_root)
                classes = require_data(opened.settings.data, opened.root).classes
                preview = preview_forget(opened, split, what_if, class_names=classes)
            else:
                preview = opened.preview_forget(what_if, dataset=dataset, dataset_root=dataset_root)
            if as_json:
                emit_json(preview.model_dump(mode="json"))
                return
            console.print(
                f"forgetting {preview.silo} removes {len(preview.removed)} component(s) "
                f"from version {preview.version}: accuracy "
                f"{100 * preview.accuracy_before:.2f}% -> {100 * preview.accuracy_after:.2f}%"
            )
            console.print(
                table(
                    "per class (%)",
                    ["class", "before", "after"],
                    [
                        (name, f"{100 * before:.1f}", f"{100 * preview.per_class_after[name]:.1f}")
                        for name, before in preview.per_class_before.items()
                    ],
                )
            )
            return
        if isinstance(opened, Registry):
            split = evaluation_split(opened, dataset, dataset_root)
            valuation = value_version(opened, split, version=version, samples=samples, seed=seed)
        else:
            valuation = opened.value(
                version=version,
                dataset=dataset,
                dataset_root=dataset_root,
                samples=samples,
                seed=seed,
            )
        if as_json:
            emit_json(valuation.model_dump(mode="json"))
            return
        exact = valuation.method == "exact"
        console.print(
            table(
                f"version {valuation.version}: {100 * valuation.accuracy:.2f}% "
                f"(θ0 {100 * valuation.theta0_accuracy:.2f}%), {valuation.method}",
                ["silo", "parts", "leave-one-out", "Shapley" if exact else "Shapley ± se"],
                [
                    (
                        s.silo,
                        s.components,
                        _points(s.leave_one_out),
                        _points(s.shapley)
                        if exact
                        else f"{_points(s.shapley)} ± {100 * s.shapley_se:.2f}",
                    )
                    for s in valuation.silos
                ],
            )
        )


__all__ = ["value"]
