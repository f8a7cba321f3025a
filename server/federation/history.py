"""What each round did, kept next to the registry for people and plots (``history.jsonl``).

One JSON object per line, appended and fsynced per round; a line cut off by a crash is
skipped when read. The registry's audit log is the authoritative record; this is the
summary a person reads.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, ValidationError

from tmc.common.schema import StrictModel

HISTORY_FILE = "history.jsonl"


class Rejection(StrictModel):
    silo: str
    reason: str


class RoundSummary(StrictModel):
    """One federated round, as the operator sees it."""

    run_id: int
    round: int
    silos_asked: tuple[str, ...]
    accepted: tuple[str, ...] = Field(description="ids of the components committed")
    accepted_silos: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    idle: tuple[str, ...] = Field(description="silos with no new data this round")
    version: int | None
    components: int = Field(description="active components in the composed model")
    accuracy: float | None = Field(None, description="server-side test accuracy")
    per_class: dict[int, float] = Field(default_factory=dict)
    federated_accuracy: float | None = Field(None, description="weighted mean of silos' scores")
    seconds: float
    slowest_training_seconds: float = 0.0
    upload_bytes: int = Field(0, description="bytes of the accepted replies (Flower's count)")
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def append_round(registry_dir: Path, summary: RoundSummary) -> None:
    path = registry_dir / HISTORY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (summary.model_dump_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(registry_dir: Path) -> list[RoundSummary]:
    path = registry_dir / HISTORY_FILE
    if not path.is_file():
        return []
    rounds: list[RoundSummary] = []
    for line in path.read_text().splitlines():
        try:
            rounds.append(RoundSummary.model_validate(json.loads(line)))
        except (ValidationError, json.JSONDecodeError):
            continue  # a line cut off by a crash
    return rounds
