"""Prometheus ``/metrics`` of the admin server, read from the registry at scrape time.

The ServerApp, ``tmc forget`` and the admin API are different processes writing one
registry, so nothing is counted in memory as it happens: a custom collector reads the
registry's state, its append-only audit log (incrementally: only the events after the last
one it read) and the round history on every scrape, and every process that scrapes the
same registry reports the same values. Each server has its own ``CollectorRegistry``
(never prometheus-client's global one), so two in one process do not collide.

Refusal reasons are free text for people; the ``reason`` label groups them into a few
kinds (:data:`REFUSAL_KINDS`) so that the series stay few.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from tmc.common.errors import ConfigError
from tmc.server.federation.history import read_history
from tmc.server.registry import Registry

_log = logging.getLogger(__name__)

RefusalKind = Literal[
    "forgotten", "timeout", "identity", "privacy", "norm", "data", "client-error", "other"
]
REFUSAL_KINDS: tuple[RefusalKind, ...] = (
    "forgotten",
    "timeout",
    "identity",
    "privacy",
    "norm",
    "data",
    "client-error",
    "other",
)
_DATA_WORDS = (
    "class(es)",
    "channel",
    "training images",
    "images are",
    "data of increment",
    "cut differently",
    "the hello states",
)


def refusal_kind(reason: str) -> RefusalKind:
    """The kind of a refusal reason, from the wording the server uses for each."""
    text = reason.lower()
    if text.startswith("forgotten on "):
        return "forgotten"
    if "timeout" in text:
        return "timeout"
    if "registered" in text or "served by node" in text:
        return "identity"
    if "ε" in reason or "dp-" in text or "dp-sgd" in text or "privacy" in text:
        return "privacy"
    if "norm" in text:
        return "norm"
    if any(word in text for word in _DATA_WORDS):
        return "data"
    if text.startswith("clientapp failed"):
        return "client-error"
    return "other"


class RegistryCollector(Collector):
    """The registry's numbers as Prometheus metrics (see docs/operations.md for the list)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._seen = 0  # audit events counted so far (sequence numbers start at 1)
        self._actions: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()

    def _read_audit(self) -> None:
        with self._lock:
            for event in self._registry.audit_log(since=self._seen):
                self._actions[event.action] += 1
                if event.action == "reject":
                    self._refusals[refusal_kind(str(event.details.get("reason", "")))] += 1
                self._seen = max(self._seen, event.seq)

    def collect(self) -> Iterator[Metric]:
        self._read_audit()
        status = self._registry.status()
        history = read_history(self._registry.root)
        current = self._registry.current_version()

        rounds = CounterMetricFamily("tmc_rounds", "federated rounds run against this registry")
        rounds.add_metric([], len(history))
        yield rounds
        last = GaugeMetricFamily("tmc_last_round", "number of the last round (0: none yet)")
        last.add_metric([], max((h.round for h in history), default=0))
        yield last
        received = CounterMetricFamily(
            "tmc_received_bytes", "bytes of the accepted components' replies, over all rounds"
        )
        received.add_metric([], sum(h.upload_bytes for h in history))
        yield received

        accepted = CounterMetricFamily(
            "tmc_components_accepted", "components committed to the registry"
        )
        accepted.add_metric([], self._actions["add"])
        yield accepted
        refused = CounterMetricFamily(
            "tmc_components_refused",
            "silos' replies or hellos refused, by kind of reason",
            labels=["reason"],
        )
        for kind in REFUSAL_KINDS:
            refused.add_metric([kind], self._refusals[kind])
        yield refused
        for action, name, text in (
            ("forget", "tmc_forgets", "components removed by forget requests (one per component)"),
            ("readmit", "tmc_readmissions", "forgotten silos readmitted"),
        ):
            family = CounterMetricFamily(name, text)
            family.add_metric([], self._actions[action])
            yield family

        components = GaugeMetricFamily(
            "tmc_components", "components in the registry, by status", labels=["status"]
        )
        for state, count in (
            ("active", status.active),
            ("forgotten", status.forgotten),
            ("pending", status.pending),
        ):
            components.add_metric([state], count)
        yield components
        version = GaugeMetricFamily("tmc_model_version", "current model version (0: none yet)")
        version.add_metric([], current.number if current is not None else 0)
        yield version
        composed = GaugeMetricFamily(
            "tmc_model_components", "components composed in the current version"
        )
        composed.add_metric([], current.count if current is not None else 0)
        yield composed
        silos = GaugeMetricFamily("tmc_silos", "silos, by standing", labels=["standing"])
        silos.add_metric(["contributing"], status.silos)
        silos.add_metric(["forgotten"], status.tombstoned)
        yield silos

        epsilon = GaugeMetricFamily(
            "tmc_silo_epsilon",
            "largest DP-SGD ε of a silo's active components (silos trained with DP only)",
            labels=["silo"],
        )
        largest: dict[str, float] = {}
        for record in self._registry.list_components(status="active"):
            if record.privacy is not None:
                largest[record.silo] = max(largest.get(record.silo, 0.0), record.privacy.epsilon)
        for silo, value in sorted(largest.items()):
            epsilon.add_metric([silo], value)
        yield epsilon


class MetricsServer:
    """``GET /metrics`` over plain HTTP on its own port (Prometheus scrapes plain text;
    keep it on loopback or a private network: it shows silo names and counts)."""

    def __init__(self, registry: Registry, *, host: str, port: int) -> None:
        self.metrics = CollectorRegistry()
        self.metrics.register(RegistryCollector(registry))
        handler = MetricsHandler.factory(self.metrics)
        try:
            self._http = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve /metrics on {host}:{port}: {exc}") from exc
        self._http.daemon_threads = True
        self.host = host
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="tmc-metrics", daemon=True
        )
        self._thread.start()
        _log.info("metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


__all__ = ["REFUSAL_KINDS", "MetricsServer", "RegistryCollector", "refusal_kind"]
