"""Local training of components (and of the non-linear baseline) and their evaluation."""

from tmc.common.training.config import (
    LossClasses,
    LossName,
    PrivacyConfig,
    TrainConfig,
)
from tmc.common.training.evaluate import (
    Evaluation,
    OutputEnsemble,
    evaluate,
    predict_logits,
    score_logits,
)
from tmc.common.training.features import MAX_CACHE_BYTES, FeatureSet, encode_dataset
from tmc.common.training.loop import finetune, fit, train_tangent
from tmc.common.training.losses import distance_penalty, rescaled_square_loss, task_loss
from tmc.common.training.report import TrainReport, label_histogram

__all__ = [
    "MAX_CACHE_BYTES",
    "Evaluation",
    "FeatureSet",
    "LossClasses",
    "LossName",
    "OutputEnsemble",
    "PrivacyConfig",
    "TrainConfig",
    "TrainReport",
    "distance_penalty",
    "encode_dataset",
    "evaluate",
    "finetune",
    "fit",
    "label_histogram",
    "predict_logits",
    "rescaled_square_loss",
    "score_logits",
    "task_loss",
    "train_tangent",
]
