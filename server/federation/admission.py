"""Whether the server admits a silo this run, from its hello: the server's own verdict,
never the silo's (its stated problems are only logged on its side).

A silo is refused, with the reason it and the audit log read, when it is tombstoned
(forgotten on request and not readmitted), when its data do not fit the federation
(unknown classes, other channels or size, no images), when its data were cut from a
dataset otherwise than the federation's other silos' (their samples may overlap), or when
the data of an increment it already contributed are no longer those its component was
trained on (the silo's folder changed, or it was re-exported with other settings).
"""

from __future__ import annotations

from tmc.common.data import DataSpec
from tmc.common.errors import TMCError
from tmc.common.federation import Hello, data_problems
from tmc.server.registry import Registry


def refusal(registry: Registry, data: DataSpec, hello: Hello) -> str | None:
    """Why ``hello``'s silo may not train in this federation, or None if it may."""
    tombstone = registry.tombstone(hello.silo)
    if tombstone is not None:
        return tombstone.refusal()
    if (
        len(hello.increment_fingerprints) != hello.num_increments
        or len(hello.increment_sizes) != hello.num_increments
    ):
        return (
            f"the hello states {hello.num_increments} increments but "
            f"{len(hello.increment_sizes)} sizes and {len(hello.increment_fingerprints)} "
            "fingerprints"
        )
    if len(hello.class_names) != len(hello.class_counts):
        return "the hello states class names and counts of different lengths"
    problems = data_problems(
        data,
        class_names=hello.class_names,
        class_counts=hello.class_counts,
        channels=hello.channels,
        image_size=hello.image_size,
    )
    if problems:
        return "; ".join(problems)
    if hello.partition is not None:
        try:
            registry.check_partition(hello.partition, silo=hello.silo, actor="server")
        except TMCError as exc:
            return str(exc)
    stated = hello.increment_fingerprints
    for increment, fingerprint in sorted(registry.contributed_increments(hello.silo).items()):
        if fingerprint and increment < len(stated) and stated[increment] != fingerprint:
            return (
                f"the data of increment {increment} are not those its component was trained "
                f"on (fingerprint {stated[increment][:12]}…, recorded {fingerprint[:12]}…): "
                "the silo's data changed or were cut with other settings; forget the silo "
                "and readmit it to contribute its new data, or leave contributed data as they "
                "were and add new images as a new increment (an image folder's "
                "increments/<name>/, named to sort after the others)"
            )
    return None


__all__ = ["refusal"]
