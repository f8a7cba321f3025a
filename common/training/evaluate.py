"""Evaluation: top-1 accuracy overall and per class, task-incremental accuracy, and the
output ensemble of non-linear models that TMC is compared with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tmc.common.device import resolve_device
from tmc.common.errors import ConfigError, DataError
from tmc.common.schema import StrictModel

Sample = tuple[torch.Tensor, int]


class Evaluation(StrictModel):
    """Scores of one model on one labelled set."""

    accuracy: float = Field(ge=0.0, le=1.0)
    num_examples: int
    per_class: dict[int, float] = Field(description="accuracy on each label present")
    task_accuracy: float | None = Field(
        None, description="argmax restricted to the classes of each sample's task"
    )


@torch.no_grad()
def predict_logits(
    model: nn.Module, dataset: Dataset[Sample], *, batch_size: int = 256, device: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over the whole dataset, in dataset order, on the CPU."""
    target = resolve_device(device)
    model.eval()
    model.to(target)
    outputs, labels = [], []
    for images, batch_labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        outputs.append(model(images.to(target)).float().cpu())
        labels.append(torch.as_tensor(batch_labels))
    model.to("cpu")
    if not outputs:
        raise DataError("cannot evaluate on an empty dataset")
    return torch.cat(outputs), torch.cat(labels)


def score_logits(
    logits: torch.Tensor, labels: torch.Tensor, *, tasks: Sequence[Sequence[int]] | None = None
) -> Evaluation:
    """Accuracy, per-class accuracy and (with ``tasks``: disjoint class sets) task accuracy."""
    predictions = logits.argmax(dim=1)
    correct = predictions == labels
    per_class = {
        int(c): float(correct[labels == c].float().mean()) for c in torch.unique(labels).tolist()
    }
    task_accuracy = None
    if tasks is not None:
        task_of = torch.full((logits.shape[1],), -1, dtype=torch.long)
        for index, classes in enumerate(tasks):
            for c in classes:
                if not 0 <= c < logits.shape[1] or task_of[c] != -1:
                    raise ConfigError(f"tasks must be disjoint sets of valid labels; {c} is not")
                task_of[c] = index
        if bool((task_of[labels] == -1).any()):
            raise ConfigError("some test labels belong to no task")
        # Mask the logits of classes outside the sample's task, then take the argmax.
        same_task = task_of.unsqueeze(0) == task_of[labels].unsqueeze(1)
        restricted = logits.masked_fill(~same_task, float("-inf")).argmax(dim=1)
        task_accuracy = float((restricted == labels).float().mean())
    return Evaluation(
        accuracy=float(correct.float().mean()),
        num_examples=len(labels),
        per_class=per_class,
        task_accuracy=task_accuracy,
    )


def evaluate(
    model: nn.Module,
    dataset: Dataset[Sample],
    *,
    tasks: Sequence[Sequence[int]] | None = None,
    batch_size: int = 256,
    device: str = "auto",
) -> Evaluation:
    logits, labels = predict_logits(model, dataset, batch_size=batch_size, device=device)
    return score_logits(logits, labels, tasks=tasks)


class OutputEnsemble(nn.Module):
    """The average of several networks' outputs: what TMC replaces at the cost of one model.

    ``softmax`` averages probabilities (returned as log-probabilities so that argmax and
    losses behave); ``logit`` averages raw outputs. docs/notes/benchmarks.md asks for both:
    on class splits they can differ by tens of points.
    """

    def __init__(self, members: Sequence[nn.Module], *, mode: Literal["softmax", "logit"]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([m(x) for m in self.members])
        if self.mode == "softmax":
            return outputs.softmax(dim=-1).mean(dim=0).clamp_min(1e-30).log()
        return outputs.mean(dim=0)
