"""Commands on the composed model: forget, compose, export, evaluate, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from tmc.common.data import DatasetSpec, load_test_set
from tmc.common.data.spec import DatasetName
from tmc.common.errors import ConfigError
from tmc.common.files import atomic_write_bytes, require_file_destination
from tmc.common.training import predict_logits, score_logits
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
from tmc.server.cli.output import console, emit_json, handle_errors, table
from tmc.server.composed import ComposedModel, FederationLabels, load_inputs, version_tasks
from tmc.server.receipts import ReceiptSigner, forget_with_receipt
from tmc.server.registry import Registry


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
    receipt_out: Annotated[
        Path | None,
        typer.Option(
            "--receipt-out",
            help="write the server's signed forget receipt here (check it with "
            "`tmc receipt verify`)",
        ),
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 key that signs receipts (default: the registry's own)"),
    ] = None,
) -> None:
    """Remove a silo's contribution exactly: the new version is bit-identical to the
    composition of the remaining components, the removed files are deleted, and the
    removal is audited. No retraining; the cost does not grow with the registry.
    Returns a receipt signed by the server, with proof that no removed component is in
    the new version. With --server, through an admin API (a silo token may forget its own
    silo only)."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json), open_target(registry, remote) as opened:
        if (silo is None) == (component is None):
            raise typer.BadParameter("give exactly one of --silo or --component")
        if isinstance(opened, Registry):
            signer = ReceiptSigner.for_registry(opened.root, signing_key)
            result, receipt = forget_with_receipt(
                opened, signer, silo=silo, component_id=component, actor=actor, reason=reason
            )
            receipt_json: str | None = receipt.to_json()
        else:
            result = opened.forget(silo=silo, component_id=component, reason=reason)
            receipt_json = result.receipt
        if receipt_out is not None and receipt_json is not None:
            atomic_write_bytes(receipt_out, receipt_json.encode(), mode=0o644)
        payload = {
            "removed": list(result.removed),
            "version": result.version.number,
            "components": result.version.count,
            "delta_sha256": result.version.delta_sha256,
            "receipt": None if receipt_out is None else str(receipt_out),
        }
        if as_json:
            emit_json(payload)
            return
        console.print(
            f"forgot {len(result.removed)} component(s); version {result.version.number} now "
            f"composes {result.version.count} component(s)"
        )
        if receipt_out is not None:
            console.print(f"receipt written to {receipt_out}")


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
        require_file_destination(out, "--out")
        sha = opened.export(out, exclude_silos=exclude_silo or (), actor="cli")
        _report_file(out, sha, as_json)


def export(
    out: Annotated[Path, typer.Option(help="safetensors file to write")],
    registry: OptionalRegistryOption = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="a past version (default: the current one)")
    ] = None,
    delta_only: Annotated[
        bool,
        typer.Option("--delta-only", help="only the composed Δ of the active components (no θ0)"),
    ] = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    ca_cert: CaCertOption = None,
    token_file: TokenFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Write the model of the current version (or --version N) as one safetensors file:
    θ0, the composed Δ and what they are (architecture, class names, input spec, version,
    hashes), byte-identical for the same version. It runs without this project
    (docs/standalone.md). --delta-only writes the composition file instead: the composed Δ
    of the active components. With --server, streamed from an
    admin API (operator token) and checked by sha256."""
    remote = Remote(server, ca_cert, token_file, insecure)
    with handle_errors(as_json=as_json):
        if delta_only and version is not None:
            raise ConfigError(
                "--version applies to the full model; --delta-only exports the composition "
                "of the active components (drop one of the two)"
            )
        require_file_destination(out, "--out")  # before anything is exported or audited
        with open_target(registry, remote) as opened:
            if not isinstance(opened, Registry):
                sha = opened.export(out) if delta_only else opened.export_model(out, version)
            elif delta_only:
                sha = opened.export(out, actor="cli")
            else:
                version = opened.version(version).number  # the same one if a round commits
                sha = opened.export_model(out, version, actor="cli")
        _report_file(out, sha, as_json, kind="delta" if delta_only else "model", version=version)


def _report_file(
    out: Path, sha: str, as_json: bool, *, kind: str = "delta", version: int | None = None
) -> None:
    size = out.stat().st_size
    if as_json:
        emit_json({"out": str(out), "sha256": sha, "bytes": size, "kind": kind, "version": version})
    else:
        what = f"model version {version}" if kind == "model" else "composed Δ"
        console.print(
            f"wrote {what} to {out} ({size} bytes, sha256 {sha})", highlight=False, soft_wrap=True
        )


def evaluate_command(
    registry: RegistryOption,
    dataset: Annotated[DatasetName, typer.Option(help="test split of this dataset")] = "digits",
    dataset_root: Annotated[Path | None, typer.Option(help="for cifar/imagefolder")] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="a past version (default: current)")
    ] = None,
    task_incremental: Annotated[
        bool,
        typer.Option(
            "--task-incremental",
            help="also score with the argmax restricted to each image's task (its silo's "
            "classes; the silos' class sets must be disjoint)",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Accuracy of the composed model on a test split, overall and per class; the split's
    classes are mapped onto the federation's by name."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        composed = ComposedModel.from_registry(opened, version)
        # Read with the federation's input spec: an image folder at the size it was trained at.
        source = load_test_set(DatasetSpec(name=dataset, root=dataset_root), composed.data)
        test_set = FederationLabels(source, composed.data, where=f"the {dataset} test split")
        logits, labels = predict_logits(composed.model, test_set)
        scores = score_logits(logits, labels)
        names = composed.classes
        payload: dict[str, Any] = {
            "accuracy": scores.accuracy,
            "per_class": {names[c]: a for c, a in scores.per_class.items()},
            "num_examples": scores.num_examples,
            "version": composed.version.number,
            "components": composed.version.count,
        }
        if task_incremental:
            payload.update(_task_scores(opened, composed, logits, labels))
        if as_json:
            emit_json(payload)
            return
        console.print(
            f"version {composed.version.number} ({composed.version.count} components): "
            f"accuracy {scores.accuracy:.4f} on {scores.num_examples} {dataset} test images",
            highlight=False,
        )
        if task_incremental:
            console.print(
                f"task accuracy {payload['task_accuracy']:.4f} on {payload['task_examples']} "
                f"images of {len(payload['tasks'])} tasks (one per silo)",
                highlight=False,
            )
        console.print(
            table(
                "Per class",
                ["class", "accuracy"],
                [[name, a] for name, a in payload["per_class"].items()],
            )
        )


def _task_scores(
    opened: Registry, composed: ComposedModel, logits: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """Task-incremental accuracy over the images whose class belongs to a task: the tasks
    are the class sets of the silos whose components the evaluated version composes."""
    tasks = version_tasks(opened, composed.version)
    covered = torch.tensor(sorted({c for classes in tasks.values() for c in classes}))
    mask = torch.isin(labels, covered)
    if not bool(mask.any()):
        raise ConfigError("no test image belongs to a task (a silo's classes): nothing to score")
    task = score_logits(logits[mask], labels[mask], tasks=list(tasks.values()))
    names = composed.classes
    return {
        "task_accuracy": task.task_accuracy,
        "task_examples": int(mask.sum()),
        "tasks": {silo: [names[c] for c in classes] for silo, classes in tasks.items()},
    }


def predict(
    registry: RegistryOption,
    inputs: Annotated[
        list[Path], typer.Argument(help="image files, or .npy arrays (C,H,W)/(N,C,H,W)")
    ],
    version: Annotated[
        int | None, typer.Option(min=1, help="a past version (default: current)")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="classes to show per input")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Classify inputs with the composed model. Images are prepared by the federation's
    input spec (size, channels, normalisation); .npy arrays must already be. --json adds
    every class's logit."""
    with handle_errors(as_json=as_json), Registry.open(registry, actor="cli") as opened:
        composed = ComposedModel.from_registry(opened, version)
        names = composed.classes
        results: list[dict[str, Any]] = []
        for path in inputs:
            scores = composed.scores(load_inputs(path, composed.data.input))
            for index, row in enumerate(scores):
                best = row.topk(min(top, row.numel()))
                label = int(best.indices[0])
                results.append(
                    {
                        "input": str(path) if scores.shape[0] == 1 else f"{path}[{index}]",
                        "class": names[label],
                        "label": label,
                        "top": [
                            {"class": names[int(c)], "label": int(c), "score": float(s)}
                            for s, c in zip(best.values, best.indices, strict=True)
                        ],
                        "logits": row.tolist(),
                    }
                )
        if as_json:
            emit_json(
                {
                    "version": composed.version.number,
                    "components": composed.version.count,
                    "classes": list(names),
                    "predictions": results,
                }
            )
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
