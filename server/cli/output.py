"""How the CLI talks: rich tables for people, ``--json`` for scripts, errors as one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from common.errors import TMCError

console = Console(stderr=False)
err_console = Console(stderr=True)

EXIT_USAGE = 2
"""Exit status of a refused request (bad input, failed check): scripts can tell it apart."""


def emit_json(payload: Any) -> None:
    """One JSON document on stdout, nothing else (progress and logs go to stderr)."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*(_cell(v) for v in row))
    return result


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


@contextmanager
def handle_errors(*, as_json: bool) -> Iterator[None]:
    """Turn project errors into a clear message and exit status 2 (no traceback)."""
    try:
        yield
    except (TMCError, ValidationError) as exc:
        message = str(exc)
        if as_json:
            emit_json({"error": type(exc).__name__, "message": message})
        else:
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc


def run_command(as_json: bool, body: Callable[[], None]) -> None:
    with handle_errors(as_json=as_json):
        body()
