"""What the serve tests share (import as ``tests.server.serving.serving_helpers``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from tmc.server.serving import ServeSettings, ServingMetrics


@dataclass(frozen=True)
class Served:
    registry: Path
    credentials: Path
    token: str
    client: TestClient
    metrics: ServingMetrics

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def settings_for(registry: Path, credentials: Path, **limits: object) -> ServeSettings:
    return ServeSettings.model_validate(
        {"registry": registry, "credentials": credentials, "poll_s": 0.05, **limits}
    )
