"""An optional on-disk cache of the benchmark's raw outputs, so that a long (full-mode) run
that is interrupted resumes where it stopped. Keyed by everything that determines a
result: the scenario, learning rate, epochs, rounds, device and θ0's hash. Local files
written by this benchmark only (loaded with pickle)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import torch

from bench.accuracy_setup import Scenario
from tmc.common.files import atomic_write_bytes

T = TypeVar("T")


class ResultCache:
    """``get``/``put`` by key; a ``None`` folder caches nothing."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    @staticmethod
    def key(kind: str, scenario: Scenario, **settings: object) -> str:
        payload = json.dumps(
            {"kind": kind, "scenario": asdict(scenario), **settings}, sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.pt"

    def get(self, key: str, kind: type[T]) -> T | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        value = torch.load(path, weights_only=False)
        return value if isinstance(value, kind) else None

    def put(self, key: str, value: object) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(value, buffer)
        atomic_write_bytes(path, buffer.getvalue(), mode=0o644)
