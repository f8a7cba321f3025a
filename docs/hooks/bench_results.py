"""MkDocs hook: the benchmark reports of ``bench/results/`` become pages of the site at build
time (``benchmarks/results/NAME.md`` with their plots beside them), so the site shows what
the benchmark commands last wrote and no copy can drift from it."""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
SITE_FOLDER = "benchmarks/results"
KINDS = ("*.md", "*.png")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for pattern in KINDS:
        for source in sorted(RESULTS.glob(pattern)):
            uri = f"{SITE_FOLDER}/{source.name}"
            files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
