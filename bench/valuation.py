"""Valuing silos from cached logits vs recomposing every subset: time against silo count.

For n silos (one component each, random Δ on the built-in digits base, digits test split),
exact Shapley values need u(S) for all 2ⁿ coalitions. Two ways, side by side:

* **cached**: each component's J·Δ logits once (n forward passes, the cache fill), then every
  coalition as a weighted sum of arrays (``tmc.server.valuation``);
* **recompose**: for each coalition, compose Δ exactly from the components and run the
  composed model on the split (one forward pass per coalition), the way one would without
  linearity.

Both are timed with interleaved repetitions (median); recomposing all 2ⁿ subsets is measured
in full up to ``--full-up-to`` silos and extrapolated from a sample of coalitions beyond
(marked as such). The utilities of the two ways are compared on every measured coalition.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import describe_machine
from bench.timing import interleaved_medians
from tmc.common.components import Component, ComponentMeta, Delta, compose
from tmc.common.data import DatasetSpec
from tmc.common.data.dataset_inputs import dataset_data_spec
from tmc.common.models import BaseModelSpec, materialize
from tmc.common.tangent import TangentModel
from tmc.server.registry import BaseRecord, Registry
from tmc.server.valuation import ComponentLogits, CompositionGame, players_from, shapley
from tmc.server.valuation.split import evaluation_split

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLED_COALITIONS = 16


def _registry(root: Path, silos: int) -> Registry:
    base = materialize(BaseModelSpec.builtin_digits())
    registry = Registry.create(
        root,
        base=BaseRecord.from_materialized(base),
        theta0=base.theta0(),
        data=dataset_data_spec(DatasetSpec(name="digits")),
    )
    for index in range(silos):
        generator = torch.Generator().manual_seed(index)
        delta = Delta(
            {
                name: torch.randn(shape, generator=generator) * 0.05
                for name, (shape, _) in base.tangent_shapes().items()
            }
        )
        meta = ComponentMeta(
            base_sha256=base.sha256, silo=f"silo-{index:02d}", round=1, num_examples=20
        )
        registry.add(Component(delta, meta))
    registry.commit_version(reason="bench")
    return registry


def components_zero(model: TangentModel) -> dict[str, torch.Tensor]:
    """Δ = 0 (the empty coalition is θ0 itself), keyed as ``load_delta`` expects."""
    shapes = model.delta_shapes()
    return {name: torch.zeros(shape) for name, shape in shapes.items()}


def _recompose_utility(
    model: TangentModel, components: list[Component], inputs: torch.Tensor, labels: torch.Tensor
) -> float:
    if components:
        model.load_delta(dict(compose(components)))
    else:
        model.load_delta(components_zero(model))
    with torch.no_grad():
        return float((model(inputs).argmax(dim=1) == labels).float().mean())


def measure(silos: int, workdir: Path, *, reps: int, full_up_to: int) -> dict[str, Any]:
    registry = _registry(workdir / f"registry-{silos}", silos)
    try:
        split = evaluation_split(registry, "digits")
        ids = list(registry.version().component_ids)
        components = [registry.get_component(c) for c in ids]
        spec = BaseModelSpec.model_validate_json(registry.base.spec_json)
        base = materialize(spec)
        model = TangentModel(base.network, base.tangent_names).eval()
        coalitions = 1 << silos
        full = silos <= full_up_to
        rng = np.random.default_rng(silos)
        sample = (
            list(range(coalitions))
            if full
            else sorted(int(m) for m in rng.choice(coalitions, SAMPLED_COALITIONS, replace=False))
        )

        def fill() -> ComponentLogits:
            cache = ComponentLogits(registry, split)
            for component_id in ids:
                path = cache.folder / f"{component_id}.npy"
                path.unlink(missing_ok=True)
            cache.tangents(ids)
            return cache

        cache = fill()
        game = CompositionGame(
            cache.theta0(),
            cache.labels,
            players_from(cache.tangents(ids), {c: c for c in ids}, dict.fromkeys(ids, 1.0)),
        )
        order = sorted(ids)  # players_from orders silos (here: ids) by name

        def recompose_sample() -> list[float]:
            return [
                _recompose_utility(
                    model,
                    [components[ids.index(order[k])] for k in range(silos) if mask >> k & 1],
                    split.inputs,
                    split.labels,
                )
                for mask in sample
            ]

        stats = interleaved_medians(
            {
                "cache_fill": fill,
                "cached_shapley": lambda: shapley(game),
                "recompose_sample": recompose_sample,
            },
            reps=reps,
            warmup=1,
        )
        utilities = game.all_utilities()
        recomposed = recompose_sample()
        worst = max(abs(utilities[m] - u) for m, u in zip(sample, recomposed, strict=True))
        per_subset = stats["recompose_sample"].median_ms / len(sample)
        recompose_all = per_subset * coalitions
        cached_total = stats["cache_fill"].median_ms + stats["cached_shapley"].median_ms
        return {
            "silos": silos,
            "coalitions": coalitions,
            "cache_fill_ms": stats["cache_fill"].median_ms,
            "cached_shapley_ms": stats["cached_shapley"].median_ms,
            "cached_total_ms": cached_total,
            "recompose_per_coalition_ms": per_subset,
            "recompose_all_ms": recompose_all,
            "recompose_measured": "all" if full else f"{len(sample)} sampled, extrapolated",
            "speedup": recompose_all / cached_total,
            "max_utility_difference": worst,
            "split_examples": len(split.labels),
        }
    finally:
        registry.close()


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Silo values: cached logits vs recomposing every subset",
        "",
        "`python -m bench.valuation" + (" --quick" if results["quick"] else "") + "`: exact "
        "Shapley values of n silos (random Δ on the digits base, digits test split of "
        f"{results['rows'][0]['split_examples']} images). Times are medians of "
        f"{results['reps']} interleaved repetitions (ms). *Cached* = each component's J·Δ "
        "logits once (n forward passes) + all 2ⁿ coalitions from the arrays; *recompose* = "
        "for each coalition, compose Δ exactly and run the model once.",
        "",
        "| silos | coalitions | cache fill | Shapley from cache | recompose each | "
        "recompose all | measured | speed-up | max Δu |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['silos']} | {r['coalitions']} | {r['cache_fill_ms']:.0f} | "
            f"{r['cached_shapley_ms']:.1f} | {r['recompose_per_coalition_ms']:.1f} | "
            f"{r['recompose_all_ms']:.0f} | {r['recompose_measured']} | "
            f"{r['speedup']:.0f}× | {r['max_utility_difference']:.4f} |"
        )
    machine = results["machine"]
    lines += [
        "",
        "max Δu: the largest difference in accuracy between the two ways over the coalitions "
        "measured both ways (one image is "
        f"{1 / results['rows'][0]['split_examples']:.4f}; float32 composition vs float64 "
        "sums can flip a near-tie).",
        "",
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, torch "
        f"{machine['torch_version']} ({machine['torch_threads']} threads), load "
        f"{machine.get('load_average_1_5_15min')}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.valuation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="2, 4 and 6 silos, 2 reps")
    parser.add_argument("--silos", default=None, help="comma-separated silo counts")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--full-up-to", type=int, default=8, help="recompose all 2ⁿ up to n")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    counts = (
        [int(c) for c in args.silos.split(",")]
        if args.silos
        else ([2, 4, 6] if args.quick else [2, 4, 6, 8, 10, 12])
    )
    reps = args.reps or (2 if args.quick else 3)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="tmc-valuation-") as tmp:
        rows = [measure(n, Path(tmp), reps=reps, full_up_to=args.full_up_to) for n in counts]
    results = {
        "quick": args.quick,
        "reps": reps,
        "machine": describe_machine("cpu"),
        "rows": rows,
    }
    name = "valuation_quick" if args.quick else "valuation"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
