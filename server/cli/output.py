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

from tmc.common.errors import TMCError

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


def one_line(message: str) -> str:
    """A message on one line: scripts and log collectors read errors line by line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def error_message(exc: BaseException) -> str:
    """What went wrong, on one line; pydantic's errors as ``field: problem; ...``."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
    return one_line(str(exc))


def report_error(kind: str, message: str, *, as_json: bool) -> None:
    """The CLI's one way of saying a request was refused: one unwrapped line on stderr, or a
    JSON error object on stdout with ``--json``."""
    if as_json:
        emit_json({"error": kind, "message": message})
    else:
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()


@contextmanager
def handle_errors(*, as_json: bool) -> Iterator[None]:
    """Turn project errors into a clear message and exit status 2 (no traceback)."""
    try:
        yield
    except (TMCError, ValidationError) as exc:
        report_error(type(exc).__name__, error_message(exc), as_json=as_json)
        raise typer.Exit(EXIT_USAGE) from exc
    except typer.BadParameter as exc:
        report_error("UsageError", one_line(exc.format_message()), as_json=as_json)
        raise typer.Exit(EXIT_USAGE) from exc


def run_command(as_json: bool, body: Callable[[], None]) -> None:
    with handle_errors(as_json=as_json):
        body()
