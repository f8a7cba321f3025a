"""A process that commits, composes and forgets until it is killed, writing an
acknowledgement (fsynced) after each operation returns (import as
``tests.reliability.crash_worker``: spawned processes import it)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.server.registry.registry_helpers import make_component
from tmc.server.registry import Registry


def churn(root: str, acks: str, seed: int) -> None:
    rng = random.Random(seed)
    with Registry.open(Path(root), actor=f"worker-{seed}") as registry, open(acks, "a") as log:

        def ack(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

        step = 0
        while True:
            silo = f"w{seed}-{step % 3}"
            component = make_component(silo, seed * 100_000 + step, increment=step)
            registry.add(component, actor=f"worker-{seed}")
            ack(f"add {component.id} {silo}")
            if rng.random() < 0.35:
                version = registry.commit_version(reason=f"step {step}")
                ack(f"commit {version.number}")
            if rng.random() < 0.2:
                result = registry.forget(silo=silo, actor=f"worker-{seed}", reason="churn")
                ack(" ".join(["forget", silo, *result.removed]))
            step += 1
