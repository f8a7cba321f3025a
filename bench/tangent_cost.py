"""What does the tangent forward cost next to a plain forward, and next to ``torch.func.jvp``?

    python -m bench.tangent_cost [--json] [--quick] [--batch 32] [--size 64] [--reps 10]
                                 [--device cpu|cuda|auto]

For ResNet-18 (``full``: every stage and the head are tangent; ``last-stage``: layer4 and
the head), the built-in small CNN and EfficientNet-Lite0 (28 px grey input resized to 64
inside the network, as in the strong-backbone accuracy regime; depthwise convs, ReLU6), it
times side by side, interleaved (each repetition runs every candidate once, in rotating
order; median after warm-up):

* forward (no grad): the plain network, the tangent model on the dual-path engine
  (``TangentModel(path="dual")``, "tangent") and on the generic path
  (``TangentModel(path="jvp")``: ``torch.func.jvp`` over ``functional_call``, "jvp") with
  the same Δ;
* training step (forward + backward, no optimiser): plain fine-tuning of the tangent
  parameters (only they require grad, normalisation in eval mode as in TMC) and both
  tangent paths (gradient w.r.t. Δ; the generic path takes it as Jᵀg at θ0).

FLOP ratios come from ``torch.utils.flop_counter.FlopCounterMode`` over the very calls that
were timed, so a time ratio can be judged against its floor (docs/notes/benchmarks.md). The
result goes to stdout (a table, or JSON with ``--json``) and to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.machine import describe_machine
from bench.timing import Stats, interleaved_medians, paired_ratio
from tmc.common.device import resolve_device
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.tangent import TangentModel

RESULTS = Path(__file__).parent / "results"
CANDIDATES = ("plain", "tangent", "jvp")


def _flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _random_delta(base: MaterializedBase, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        name: (torch.randn(shape, generator=generator) * 0.01).to(device)
        for name, (shape, _) in base.tangent_shapes().items()
    }


def _candidates(
    base: MaterializedBase, x: torch.Tensor, device: torch.device
) -> tuple[dict[str, Callable[[], object]], dict[str, Callable[[], object]]]:
    """(forward, training step) closures for plain, tangent and jvp on the same Δ."""
    network = base.network.to(device)
    model = TangentModel(network, base.tangent_names, path="dual").to(device)
    generic = TangentModel(network, base.tangent_names, path="jvp").to(device)
    delta = _random_delta(base, device)
    model.load_delta(delta)
    generic.load_delta(delta)
    tuned = copy.deepcopy(network)  # plain fine-tuning of the same parameter subset
    for name, param in tuned.named_parameters():
        param.requires_grad_(name in set(base.tangent_names))
    trainable = [p for p in tuned.parameters() if p.requires_grad]

    def forward_plain() -> object:
        with torch.no_grad():
            return network(x)

    def forward_tangent() -> object:
        with torch.no_grad():
            return model(x)

    def forward_jvp() -> object:
        with torch.no_grad():
            return generic(x)

    def train_plain() -> object:
        for p in trainable:
            p.grad = None
        tuned(x).square().mean().backward()
        return None

    def train_tangent() -> object:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        return None

    def train_jvp() -> object:
        generic.zero_grad(set_to_none=True)
        generic(x).square().mean().backward()
        return None

    forward = {"plain": forward_plain, "tangent": forward_tangent, "jvp": forward_jvp}
    train = {"plain": train_plain, "tangent": train_tangent, "jvp": train_jvp}
    return forward, train


def _ratios(stats: dict[str, Stats]) -> tuple[float, float]:
    plain = stats["plain"].median_ms
    return stats["tangent"].median_ms / plain, stats["jvp"].median_ms / plain


def measure_scope(
    architecture: str,
    scope: str,
    *,
    channels: int,
    batch: int,
    size: int,
    reps: int,
    warmup: int,
    device: torch.device,
    input_size: int | None = None,
) -> dict[str, object]:
    """Time ratios, FLOP ratios and per-candidate spreads for one base and tangent scope."""
    spec = BaseModelSpec(
        architecture=architecture,
        num_classes=10,
        in_channels=channels,
        tangent=scope,
        input_size=input_size,
    )
    base = materialize(spec)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    forward, train = _candidates(base, x, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    fwd = interleaved_medians(forward, reps=reps, warmup=warmup, sync=sync)
    step = interleaved_medians(train, reps=reps, warmup=warmup, sync=sync)
    fwd_flops = {name: _flops(fn) for name, fn in forward.items()}
    step_flops = {name: _flops(fn) for name, fn in train.items()}
    r, j = _ratios(fwd)
    tr, tj = _ratios(step)
    return {
        "tangent_over_plain_forward": r,
        "torch_func_jvp_over_plain_forward": j,
        "flop_ratio": fwd_flops["tangent"] / fwd_flops["plain"],
        "jvp_flop_ratio": fwd_flops["jvp"] / fwd_flops["plain"],
        "train_step_tangent_over_plain": tr,
        "train_step_jvp_over_plain": tj,
        "train_step_flop_ratio": step_flops["tangent"] / step_flops["plain"],
        "train_step_jvp_flop_ratio": step_flops["jvp"] / step_flops["plain"],
        "paired_ratios": {
            "tangent_over_plain_forward": paired_ratio(fwd["tangent"], fwd["plain"]),
            "torch_func_jvp_over_plain_forward": paired_ratio(fwd["jvp"], fwd["plain"]),
            "train_step_tangent_over_plain": paired_ratio(step["tangent"], step["plain"]),
            "train_step_jvp_over_plain": paired_ratio(step["jvp"], step["plain"]),
        },
        "plain_forward_gflop": fwd_flops["plain"] / 1e9,
        "tangent_parameters": base.num_tangent_parameters,
        "spread": {
            **{f"forward/{k}": v.as_dict() for k, v in fwd.items()},
            **{f"train_step/{k}": v.as_dict() for k, v in step.items()},
        },
    }


def _flatten(full: dict[str, object], last: dict[str, object]) -> dict[str, object]:
    """The scope ``full`` under plain keys, ``last-stage`` under ``last_stage_`` keys."""
    spread = {f"full/{k}": v for k, v in full.pop("spread").items()}  # type: ignore[attr-defined]
    spread |= {f"last_stage/{k}": v for k, v in last.pop("spread").items()}  # type: ignore[attr-defined]
    return {**full, **{f"last_stage_{k}": v for k, v in last.items()}, "spread": spread}


def measure_model(
    architecture: str,
    *,
    channels: int,
    batch: int,
    size: int,
    reps: int,
    warmup: int,
    device: torch.device,
    input_size: int | None = None,
) -> dict[str, object]:
    """Both tangent scopes of one architecture: ``full`` under plain keys, ``last-stage``
    under ``last_stage_`` keys."""
    common = {"batch": batch, "image_size": size, "reps": reps, "warmup": warmup}
    if input_size is not None:
        common["network_input_size"] = input_size
    results = [
        measure_scope(
            architecture,
            scope,
            channels=channels,
            batch=batch,
            size=size,
            reps=reps,
            warmup=warmup,
            device=device,
            input_size=input_size,
        )
        for scope in ("full", "last-stage")
    ]
    return {"model": architecture, **_flatten(*results), **common}


def run(
    *,
    batch: int = 32,
    size: int = 64,
    reps: int = 10,
    warmup: int = 3,
    device: str = "auto",
    small_batch: int = 256,
    small_size: int = 8,
    lite_input_size: int | None = 64,
) -> dict[str, object]:
    """ResNet-18 at ``batch``×``size`` px, the small CNN (digits: 8 px, batch 256) and
    EfficientNet-Lite0 on ``batch`` 28 px grey images resized to ``lite_input_size``
    (``None``: not measured; its depthwise convs take seconds on a loaded CPU)."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    result = measure_model(
        "resnet18", channels=3, batch=batch, size=size, reps=reps, warmup=warmup, device=dev
    )
    result["small_cnn"] = measure_model(
        "small-cnn",
        channels=1,
        batch=small_batch,
        size=small_size,
        reps=reps,
        warmup=warmup,
        device=dev,
    )
    if lite_input_size is not None:
        result["efficientnet_lite0"] = measure_model(
            "efficientnet-lite0",
            channels=1,
            batch=batch,
            size=28,
            reps=reps,
            warmup=warmup,
            device=dev,
            input_size=lite_input_size,
        )
    result["machine"] = describe_machine(dev)
    return result


_ROWS = (
    (
        "forward, full",
        "",
        "tangent_over_plain_forward",
        "torch_func_jvp_over_plain_forward",
        "flop_ratio",
    ),
    (
        "forward, last stage",
        "last_stage_",
        "tangent_over_plain_forward",
        "torch_func_jvp_over_plain_forward",
        "flop_ratio",
    ),
    (
        "train step, full",
        "",
        "train_step_tangent_over_plain",
        "train_step_jvp_over_plain",
        "train_step_flop_ratio",
    ),
    (
        "train step, last stage",
        "last_stage_",
        "train_step_tangent_over_plain",
        "train_step_jvp_over_plain",
        "train_step_flop_ratio",
    ),
)
_HEADER = (
    "model",
    "what",
    "tangent / plain",
    "jvp / plain",
    "FLOP ratio",
    "paired tangent / plain",
    "paired jvp / plain",
    "tangent ≤ 1.1·FLOP and ≤ jvp",
)


def _model_rows(label: str, data: dict[str, object]) -> list[tuple[str, ...]]:
    """One model's rows: per scope and measurement, the ratios of medians, then the medians
    of per-repetition ratios (``paired``), and whether the engine meets its bound."""
    rows: list[tuple[str, ...]] = []
    for what, prefix, r, j, f in _ROWS:
        paired = data[f"{prefix}paired_ratios"]
        assert isinstance(paired, dict)
        ratio, jvp, flops = (float(data[prefix + key]) for key in (r, j, f))  # type: ignore[arg-type]
        meets = ratio <= 1.1 * flops and ratio <= jvp
        rows.append(
            (
                *(label, what, f"{ratio:.2f}", f"{jvp:.2f}", f"{flops:.2f}"),
                *(f"{paired[r]:.2f}", f"{paired[j]:.2f}", "yes" if meets else "no"),
            )
        )
    return rows


def _table_rows(result: dict[str, object]) -> list[tuple[str, ...]]:
    """One row per model, scope and measurement: ratios of medians, then the medians of
    per-repetition ratios (``paired``)."""
    rows: list[tuple[str, ...]] = []
    models = [(str(result["model"]), result)]
    for key, label in (("small_cnn", "small-cnn"), ("efficientnet_lite0", "efficientnet-lite0")):
        if key in result:  # results written before EfficientNet-Lite0 was measured lack it
            data = result[key]
            assert isinstance(data, dict)
            models.append((label, data))
    for label, data in models:
        rows += _model_rows(label, data)
    return rows


def markdown(result: dict[str, object]) -> str:
    machine = result["machine"]
    assert isinstance(machine, dict)
    small = result["small_cnn"]
    assert isinstance(small, dict)
    lines = [
        "# Tangent forward cost (`python -m bench.tangent_cost`)",
        "",
        f"ResNet-18: batch {result['batch']}, {result['image_size']} px; small CNN: batch "
        f"{small['batch']}, {small['image_size']} px; EfficientNet-Lite0: batch "
        f"{result['batch']}, 28 px resized to 64 in the network. 'tangent' is the dual-path "
        "engine, 'jvp' the generic torch.func.jvp path of the same TangentModel. Median of "
        f"{result['reps']} interleaved "
        f"repetitions after {result['warmup']} warm-up rounds. Machine: {machine['cpu_model']}, "
        f"{machine['usable_cores']} cores, {machine['torch_threads']} torch threads, torch "
        f"{machine['torch_version']}, device {machine['device']}"
        + (f" ({machine['gpu_name']})" if "gpu_name" in machine else "")
        + ".",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _table_rows(result)]
    return "\n".join(lines) + "\n"


def markdown_single(result: dict[str, object]) -> str:
    """The table of one model measured alone (``--lite0-only``)."""
    machine = result["machine"]
    assert isinstance(machine, dict)
    label = str(result["model"])
    lines = [
        f"# Tangent forward cost of {label} (`python -m bench.tangent_cost --lite0-only`)",
        "",
        f"Batch {result['batch']}, {result['image_size']} px grey images resized to "
        f"{result.get('network_input_size')} in the network. 'tangent' is the dual-path engine "
        "(TangentModel(path='dual')), 'jvp' the generic path (TangentModel(path='jvp'): "
        "torch.func.jvp over functional_call; training takes the gradient as Jᵀg at θ0). "
        f"Median of {result['reps']} interleaved repetitions after {result['warmup']} warm-up "
        f"rounds. Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, "
        f"{machine['torch_threads']} torch threads, device {machine['device']}.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    rows = ["| " + " | ".join(row) + " |" for row in _model_rows(label, result)]
    return "\n".join(lines + rows) + "\n"


def _print_table(result: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Tangent model cost (time ratios: median of interleaved repetitions)")
    for column in _HEADER:
        table.add_column(column, justify="left" if column in _HEADER[:2] else "right")
    for row in _table_rows(result):
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"machine: {json.dumps(result['machine'])}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tangent_cost", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON object on stdout")
    parser.add_argument(
        "--quick", action="store_true", help="10 reps and 1 warm-up round (< 2 min)"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed repetitions, at least 10 (default 20; 10 quick)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    parser.add_argument(
        "--lite0-only",
        action="store_true",
        help="EfficientNet-Lite0 alone (28 px resized to 64; batch --batch), written to "
        "tangent_cost_lite0.{json,md}",
    )
    args = parser.parse_args(argv)
    reps = max(10, args.reps if args.reps is not None else (10 if args.quick else 20))
    if args.lite0_only:
        dev = resolve_device(args.device)
        lite = measure_model(
            "efficientnet-lite0",
            channels=1,
            batch=args.batch,
            size=28,
            reps=reps,
            warmup=1 if args.quick else 3,
            device=dev,
            input_size=64,
        )
        lite["machine"] = describe_machine(dev)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tangent_cost_lite0.json").write_text(json.dumps(lite, indent=2) + "\n")
        (args.out / "tangent_cost_lite0.md").write_text(markdown_single(lite))
        print(json.dumps(lite, indent=2) if args.json else markdown_single(lite))
        return
    result = run(
        batch=args.batch,
        size=args.size,
        reps=reps,
        warmup=1 if args.quick else 3,
        device=args.device,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tangent_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "tangent_cost.md").write_text(markdown(result))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)


if __name__ == "__main__":
    main()
