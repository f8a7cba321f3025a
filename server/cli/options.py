"""Options shared by several ``tmc`` commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RegistryOption = Annotated[Path, typer.Option("--registry", help="registry folder")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document")]
