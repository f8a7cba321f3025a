"""Whether a silo's data fit the federation, from what the silo says at hello.

The same pure function runs on both sides: the ClientApp logs its result on the silo (so
the operator there reads why it will not train), and the ServerApp refuses the silo with
it (audited). The server never trusts the silo's own verdict, only the facts it stated.
"""

from __future__ import annotations

from pydantic import Field

from tmc.common.data.inputs import DataSpec
from tmc.common.data.spec import PartitionSpec
from tmc.common.schema import StrictModel


class PartitionRecord(StrictModel):
    """How silo data were cut from one dataset (simulated silos, and silo folders written
    by ``tmc data export``). The federation records the first one it sees; a silo whose
    data were cut otherwise is refused, since its samples may overlap other silos'."""

    identity: str = Field(max_length=256, description="the split cut, e.g. 'digits:train'")
    partition: PartitionSpec

    def differences(self, other: PartitionRecord) -> list[str]:
        """``key: ours vs theirs`` for every setting that differs."""
        mine = {"dataset": self.identity, **self.partition.model_dump(mode="json")}
        theirs = {"dataset": other.identity, **other.partition.model_dump(mode="json")}
        return [
            f"{key.replace('_', '-')}: {mine[key]!r} vs {theirs[key]!r}"
            for key in mine
            if mine[key] != theirs.get(key)
        ]


def _listed(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def data_problems(
    data: DataSpec,
    *,
    class_names: tuple[str, ...],
    class_counts: tuple[int, ...],
    channels: tuple[int, ...],
    image_size: int | None,
) -> list[str]:
    """Why a silo holding these data cannot train for a federation with ``data`` (empty
    when it can): no samples, classes the federation does not know, images with another
    number of channels, or (for data stored preprocessed) another size."""
    problems: list[str] = []
    if sum(class_counts) == 0:
        problems.append("the silo holds no training images")
    unknown = data.unknown(class_names)
    if unknown:
        problems.append(
            f"class(es) {_listed(unknown)} are not in the federation's label space "
            f"({_listed(list(data.classes))})"
        )
    wrong = sorted(set(channels) - {data.input.channels})
    if wrong:
        names = {1: "grayscale, 1 channel", 3: "colour, 3 channels"}
        found = "; ".join(names.get(c, f"{c} channels") for c in wrong)
        problems.append(
            f"images are {found}, but the federation's input has {data.input.channels} "
            f"channel(s) ({data.input.describe()})"
        )
    if image_size is not None and image_size != data.input.size:
        problems.append(
            f"images are stored at {image_size}×{image_size} px, the federation's input is "
            f"{data.input.size}×{data.input.size}"
        )
    return problems


__all__ = ["PartitionRecord", "data_problems"]
