"""``python -m bench.serve_latency [--quick] [--json]``: is ``POST /v1/predict`` flat in N?

For N = 1, 10 and 100 components (``--counts``), a registry of the built-in digits base
(``small-cnn``) with N random components is served by its own ``tmc serve`` process on a
free loopback port. Each repetition times, for every N in rotating order, ``--requests``
sequential one-image JSON requests (latency: p50, p99) and then the same number from
``--clients`` concurrent clients (throughput), over keep-alive HTTP. The table gives the
median over repetitions, and the p99 ratio to N=1 as the median of per-repetition ratios
(the candidates of one repetition ran back to back, under the same load).

Composed inference runs one model whatever N (the components are summed into one Δ when a
version is committed), so the expectation is a flat row: p99 at N=100 within 1.2× of N=1.
Results: ``bench/results/serve_latency.json`` and ``.md``, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from bench.machine import describe_machine
from tmc.common.components import Component, ComponentMeta, Delta
from tmc.common.data import DatasetSpec, dataset_data_spec
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.server.admin.auth import create_token
from tmc.server.registry import BaseRecord, Registry

RESULTS = Path(__file__).parent / "results"
TARGET_P99_RATIO = 1.2


@dataclass(frozen=True)
class ServeBenchSettings:
    counts: tuple[int, ...] = (1, 10, 100)
    reps: int = 7
    requests: int = 200
    clients: int = 4
    warmup: int = 20
    forgets: int = 5


QUICK = ServeBenchSettings(reps=3, requests=60, warmup=10, forgets=2)


def build_registry(root: Path, base: MaterializedBase, count: int) -> None:
    """A registry with ``count`` random components (one silo each) in one version."""
    with Registry.create(
        root,
        base=BaseRecord.from_materialized(base),
        theta0=base.theta0(),
        data=dataset_data_spec(DatasetSpec(name="digits")),
    ) as registry:
        for index in range(count):
            generator = torch.Generator().manual_seed(index)
            delta = Delta(
                {
                    name: torch.randn(shape, generator=generator) * 0.01
                    for name, (shape, _) in base.tangent_shapes().items()
                }
            )
            meta = ComponentMeta(base_sha256=base.sha256, silo=f"silo-{index}", num_examples=10)
            registry.add(Component(delta, meta))
        registry.commit_version(round=1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    count: int
    url: str
    process: subprocess.Popen[bytes]


def start_server(registry: Path, credentials: Path, count: int, log: Path) -> Server:
    port = _free_port()
    tmc = Path(sys.executable).parent / "tmc"
    argv = [str(tmc), "serve", "--registry", str(registry), "--credentials", str(credentials)]
    argv += ["--port", str(port), "--max-batch", "64"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(count, f"http://127.0.0.1:{port}", process)


def wait_ready(server: Server, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"tmc serve for N={server.count} exited ({server.process.returncode})"
            )
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"tmc serve for N={server.count} did not come up in {timeout_s:.0f} s")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=5)


def _post(client: httpx.Client, body: bytes, count: int) -> float:
    start = time.perf_counter()
    response = client.post("/v1/predict", content=body)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"N={count}: {response.status_code} {response.text[:200]}")
    if len(response.json()["component_ids"]) != count:
        raise RuntimeError(f"N={count}: the answer names another number of components")
    return elapsed


def _client(server: Server, token: str) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def latencies(server: Server, token: str, body: bytes, requests: int) -> list[float]:
    with _client(server, token) as client:
        return [_post(client, body, server.count) for _ in range(requests)]


def throughput(server: Server, token: str, body: bytes, requests: int, clients: int) -> float:
    """Requests per second from ``clients`` concurrent keep-alive clients."""
    share = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def work(n: int) -> None:
        with _client(server, token) as client:
            for _ in range(n):
                _post(client, body, server.count)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, share))
    return requests / (time.perf_counter() - start)


def forget_to_answer(
    server: Server, registry: Path, token: str, body: bytes, forgets: int
) -> dict[str, Any]:
    """Forget one silo at a time and time the next answer: it must already come from the
    version without the silo (the service refuses to answer from a purged version), so
    the time is how long that answer took to arrive after the forget returned."""
    times_ms: list[float] = []
    excluded = 0
    with _client(server, token) as client, Registry.open(registry, actor="bench") as opened:
        for index in range(forgets):
            silo = f"silo-{index}"
            gone = {r.id for r in opened.list_components(silo=silo)}
            result = opened.forget(silo=silo, actor="bench", reason="benchmark")
            start = time.perf_counter()
            response = client.post("/v1/predict", content=body)
            times_ms.append((time.perf_counter() - start) * 1000.0)
            answer = response.json()
            if (
                response.status_code == 200
                and answer["version"] == result.version.number
                and not gone & set(answer["component_ids"])
            ):
                excluded += 1
    return {
        "components": server.count,
        "forgets": forgets,
        "next_answer_without_the_silo": excluded,
        "median_ms": statistics.median(times_ms),
        "max_ms": max(times_ms),
        "times_ms": times_ms,
    }


def _percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0


def measure(settings: ServeBenchSettings, workdir: Path) -> dict[str, Any]:
    base = materialize(BaseModelSpec.builtin_digits())
    credentials = workdir / "credentials.json"
    token, _ = create_token(credentials, role="operator", label="bench")
    image = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    body = json.dumps({"inputs": image.tolist()}).encode()
    servers: list[Server] = []
    try:
        for count in settings.counts:
            root = workdir / f"registry-{count}"
            build_registry(root, base, count)
            servers.append(start_server(root, credentials, count, workdir / f"serve-{count}.log"))
        for server in servers:
            wait_ready(server)
            latencies(server, token, body, settings.warmup)
        per_rep: dict[int, list[dict[str, float]]] = {c: [] for c in settings.counts}
        for rep in range(settings.reps):
            shift = rep % len(servers)
            for server in servers[shift:] + servers[:shift]:
                times = latencies(server, token, body, settings.requests)
                rate = throughput(server, token, body, settings.requests, settings.clients)
                per_rep[server.count].append(
                    {
                        "p50_ms": _percentile_ms(times, 50),
                        "p99_ms": _percentile_ms(times, 99),
                        "throughput_rps": rate,
                    }
                )
        largest = servers[-1]
        forgets = min(settings.forgets, largest.count - 1)  # keep one component
        forgetting = (
            forget_to_answer(largest, workdir / f"registry-{largest.count}", token, body, forgets)
            if forgets > 0
            else None
        )
    finally:
        for server in servers:
            stop(server)
    first = settings.counts[0]
    rows: list[dict[str, Any]] = []
    for count in settings.counts:
        reps = per_rep[count]
        ratios = [r["p99_ms"] / f["p99_ms"] for r, f in zip(reps, per_rep[first], strict=True)]
        rows.append(
            {
                "components": count,
                "p50_ms": statistics.median(r["p50_ms"] for r in reps),
                "p99_ms": statistics.median(r["p99_ms"] for r in reps),
                "throughput_rps": statistics.median(r["throughput_rps"] for r in reps),
                "p99_ratio_to_first": statistics.median(ratios),
                "per_rep": reps,
            }
        )
    last = float(rows[-1]["p99_ratio_to_first"])
    return {
        "settings": asdict(settings),
        "model": "small-cnn (built-in digits base), one 8×8 image per request, JSON",
        "machine": describe_machine("cpu"),
        "rows": rows,
        "p99_ratio_last_to_first": last,
        "target_p99_ratio": TARGET_P99_RATIO,
        "flat": last <= TARGET_P99_RATIO,
        "forget": forgetting,
    }


def markdown(results: dict[str, Any]) -> str:
    settings, machine, forget = results["settings"], results["machine"], results["forget"]
    lines = [
        "# `POST /v1/predict` latency and throughput against N components",
        "",
        "`python -m bench.serve_latency`: one `tmc serve` process per N on loopback, "
        f"{settings['reps']} interleaved repetitions of {settings['requests']} sequential "
        f"requests (latency) and {settings['requests']} requests from {settings['clients']} "
        "concurrent clients (throughput); medians over repetitions.",
        f"Model: {results['model']}.",
        "",
        "| components | p50 (ms) | p99 (ms) | throughput (req/s) | p99 / p99 at "
        f"N={results['rows'][0]['components']} |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['components']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['throughput_rps']:.0f} | {row['p99_ratio_to_first']:.2f} |"
        )
    verdict = "flat" if results["flat"] else "NOT flat"
    lines += [
        "",
        f"p99 ratio of the largest N to the smallest: {results['p99_ratio_last_to_first']:.2f} "
        f"(target ≤ {results['target_p99_ratio']}): {verdict}.",
        "",
    ]
    if forget is not None:
        lines += [
            f"Forgets on the N={forget['components']} server, one silo at a time, each "
            f"followed by one request: {forget['next_answer_without_the_silo']} of "
            f"{forget['forgets']} next answers already came from the version without the "
            f"silo; that answer arrived {forget['median_ms']:.0f} ms (median, max "
            f"{forget['max_ms']:.0f} ms) after the forget returned (it includes loading the "
            "new version).",
            "",
        ]
    lines += [
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, torch "
        f"{machine['torch_version']} ({machine['torch_threads']} threads), load average "
        f"{machine.get('load_average_1_5_15min')} at the end.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and requests")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--counts", default=None, help="component counts, e.g. 1,10,100")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
    parser.add_argument("--requests", type=int, default=None, help="requests per measurement")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    # SIGTERM ends the run through the finally that stops the servers it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    settings = QUICK if args.quick else ServeBenchSettings()
    overrides: dict[str, Any] = {
        "counts": tuple(int(c) for c in args.counts.split(",")) if args.counts else None,
        "reps": args.reps,
        "requests": args.requests,
        "clients": args.clients,
    }
    settings = ServeBenchSettings(
        **{**asdict(settings), **{k: v for k, v in overrides.items() if v is not None}}
    )
    with tempfile.TemporaryDirectory(prefix="tmc-serve-bench-") as tmp:
        results = measure(settings, Path(tmp))
    stem = "serve_latency_quick" if args.quick else "serve_latency"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(results))
    print(json.dumps(results, indent=2) if args.json else markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
