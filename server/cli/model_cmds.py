"""Commands on the composed model: forget, compose, export, evaluate, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from common.data import DatasetSpec, load_dataset
from common.data.spec import DatasetName
from common.training import evaluate
from server.cli.admin_cmds import (
    CaCertOption,
    InsecureOption,
    OptionalRegistryOption,
    Remote,
    ServerOption,
    TokenFileOption,
    open_target,
)
from server.cli.options import JsonOption, RegistryOption
from server.cli.output import console, emit_json, handle_errors, table
from server.composed import ComposedModel, load_inputs
from server.registry import Registry


def forget(
    registry: OptionalRegistryOption = None,
    silo: Annotated[str | None, typer.Option(help="forget every component of this silo")] = None,
    component: Annotated[str | None, typer.Option(help="forget one component (its id)")] = None,
    reason: Annotated[str, typer.Option(help="recorded in the audit log")] = "",
    actor: Annotated[
        str, typer.Option(help="who asks (audit log; with --server the token decides)")
    ] = "operator",
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Remove a silo's contribution exactly: the new version is bit-identical to the
    composition of the remaining components, the removed files are deleted, and the
    removal is audited. No retraining; the cost does not grow with the registry.
    With --server, through an admin API (a silo token may forget its own silo only)."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        if (silo is None) == (component is None):
            raise typer.BadParameter("give exactly one of --silo or --component")
        if isinstance(opened, Registry):
            result = opened.forget(silo=silo, component_id=component, actor=actor, reason=reason)
        else:
            result = opened.forget(silo=silo, component_id=component, reason=reason)
        payload = {
            "removed": list(result.removed),
            "version": result.version.number,
            "components": result.version.count,
            "delta_sha256": result.version.delta_sha256,
        }
        if as_json:
            emit_json(payload)
            return
        console.print(
            f"forgot {len(result.removed)} component(s); version {result.version.number} now "
            f"composes {result.version.count} component(s)"
        )


def compose(
    registry: RegistryOption,
    out: Annotated[Path, typer.Option(help="safetensors file to write")],
    exclude_silo: Annotated[
        list[str] | None, typer.Option("--exclude-silo", help="leave this silo out (repeatable)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write the composed Δ of the active components (optionally without some silos).
    The file is byte-identical to any other composition of the same components."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        sha = opened.export(out, exclude_silos=exclude_silo or ())
        _report_file(out, sha, as_json)


def export(
    out: Annotated[Path, typer.Option(help="safetensors file to write")],
    registry: OptionalRegistryOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Write the composed Δ of the current model (safetensors + composition metadata).
    With --server, streamed from an admin API (operator token) and checked by sha256."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        sha = opened.export(out)
        _report_file(out, sha, as_json)


def _report_file(out: Path, sha: str, as_json: bool) -> None:
    if as_json:
        emit_json({"out": str(out), "sha256": sha, "bytes": out.stat().st_size})
    else:
        console.print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {sha})")


def evaluate_command(
    registry: RegistryOption,
    dataset: Annotated[DatasetName, typer.Option(help="test split of this dataset")] = "digits",
    dataset_root: Annotated[Path | None, typer.Option(help="for cifar/imagefolder")] = None,
    version: Annotated[int | None, typer.Option(help="a past version (default: current)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Accuracy of the composed model on a test split, overall and per class."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        composed = ComposedModel.from_registry(opened, version)
        test_set = load_dataset(DatasetSpec(name=dataset, root=dataset_root), train=False)
        scores = evaluate(composed.model, test_set)
        payload = {
            "accuracy": scores.accuracy,
            "per_class": {str(c): a for c, a in scores.per_class.items()},
            "num_examples": scores.num_examples,
            "version": composed.version.number,
            "components": composed.version.count,
        }
        if as_json:
            emit_json(payload)
            return
        console.print(
            f"version {composed.version.number} ({composed.version.count} components): "
            f"accuracy {scores.accuracy:.4f} on {scores.num_examples} {dataset} test images"
        )
        console.print(
            table("Per class", ["class", "accuracy"], [[c, a] for c, a in scores.per_class.items()])
        )


def predict(
    registry: RegistryOption,
    inputs: Annotated[list[Path], typer.Argument(help="image files or .npy arrays")],
    dataset: Annotated[
        DatasetName, typer.Option(help="how to prepare images (size, channels, normalisation)")
    ] = "digits",
    size: Annotated[int | None, typer.Option(help="image side (default: the dataset's)")] = None,
    top: Annotated[int, typer.Option(min=1, help="classes to show per input")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Classify inputs with the composed model."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        composed = ComposedModel.from_registry(opened)
        channels = composed.base.spec.in_channels
        results: list[dict[str, Any]] = []
        for path in inputs:
            batch = load_inputs(path, dataset=dataset, in_channels=channels, size=size)
            scores = composed.scores(batch)
            for index, row in enumerate(scores):
                best = row.topk(min(top, row.numel()))
                results.append(
                    {
                        "input": str(path) if scores.shape[0] == 1 else f"{path}[{index}]",
                        "class": int(best.indices[0]),
                        "top": [
                            {"class": int(c), "score": float(s)}
                            for s, c in zip(best.values, best.indices, strict=True)
                        ],
                    }
                )
        if as_json:
            emit_json(results)
            return
        console.print(
            table(
                f"Predictions (version {composed.version.number})",
                ["input", "class", "top scores"],
                [
                    [
                        r["input"],
                        r["class"],
                        ", ".join(f"{t['class']}: {t['score']:.2f}" for t in r["top"]),
                    ]
                    for r in results
                ],
            )
        )
