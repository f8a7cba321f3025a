"""Prometheus metrics of one serve app, in a registry of its own (never the process-wide
default), so that several apps in one process (tests, benchmarks) count separately."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Composed inference of a small model answers in milliseconds; a large batch of a big
# model, or a wait for a reload after a forget, takes up to seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServingMetrics:
    """What ``GET /metrics`` reports: requests by status, latency, the served model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tmc_serve_prediction_requests",
            "Prediction requests answered, by HTTP status code.",
            ["status"],
            registry=self.registry,
        )
        self.items = Counter(
            "tmc_serve_predicted_items",
            "Inputs classified (a batch of n counts n).",
            registry=self.registry,
        )
        self.latency = Histogram(
            "tmc_serve_prediction_latency_seconds",
            "Time from a prediction request's arrival to its answer, in seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.version = Gauge(
            "tmc_serve_model_version",
            "Registry version of the served model (0: none loaded).",
            registry=self.registry,
        )
        self.components = Gauge(
            "tmc_serve_active_components",
            "Components composed into the served model.",
            registry=self.registry,
        )
        self.reloads = Counter(
            "tmc_serve_model_reloads",
            "Loads of a new registry version, by outcome (loaded, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.invalidations = Counter(
            "tmc_serve_model_invalidations",
            "Served versions found to contain a forgotten component (never answered again).",
            registry=self.registry,
        )

    def served(self, version: int, components: int) -> None:
        self.version.set(version)
        self.components.set(components)
        self.reloads.labels(outcome="loaded").inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class PredictionMetrics:
    """Counts every answer on ``path`` by status and times it, whatever refused it (the
    size limit, auth, the model): pure ASGI middleware, outside every other layer."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics, path: str) -> None:
        self.app = app
        self.metrics = metrics
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)
            self.metrics.requests.labels(status=str(status)).inc()


__all__ = ["PredictionMetrics", "ServingMetrics"]
