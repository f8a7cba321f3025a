"""``tmc data export``: write silo folders for real silo nodes (``data-path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec, export_silo
from tmc.common.data.spec import DatasetName
from tmc.server.cli.output import console, emit_json, handle_errors

data_app = typer.Typer(help="Prepare data for silo nodes.", no_args_is_help=True)


@data_app.command("export")
def export_silos(
    out: Annotated[Path, typer.Option(help="folder that receives one sub-folder per silo")],
    dataset: Annotated[DatasetName, typer.Option(help="source dataset")] = "digits",
    dataset_root: Annotated[Path | None, typer.Option(help="for cifar/imagefolder")] = None,
    silos: Annotated[int, typer.Option(min=1, help="number of silos")] = 3,
    split: Annotated[str, typer.Option(help="class | iid | dirichlet:BETA")] = "class",
    increments: Annotated[int, typer.Option(min=1, help="increments per silo")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="seed of the split")] = 0,
    public_fraction: Annotated[float, typer.Option(help="held out for the base")] = 0.2,
    include_test: Annotated[bool, typer.Option(help="ship the test split with each silo")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Cut a dataset into silos exactly as ``tmc simulate`` does (same seed, same split) and
    write each silo to ``OUT/silo-i`` (``data.safetensors`` + ``silo.json``)."""
    with handle_errors(as_json=as_json):
        partition = FederatedPartition(
            DatasetSpec(name=dataset, root=dataset_root),
            PartitionSpec(
                split=split,
                num_silos=silos,
                num_increments=increments,
                seed=seed,
                public_fraction=public_fraction,
            ),
        )
        written = []
        for index, name in enumerate(partition.silo_names()):
            manifest = export_silo(partition, index, out / name, include_test=include_test)
            written.append(
                {"silo": name, "path": str(out / name), "samples": sum(manifest.increment_sizes)}
            )
        if as_json:
            emit_json(written)
            return
        for item in written:
            console.print(f"{item['silo']}: {item['samples']} samples → {item['path']}")
