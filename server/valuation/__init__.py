"""What each silo's contribution is worth, exactly: cached component logits on the server's
labelled split, leave-one-out and Shapley values, a forget's preview, values per version."""

from tmc.server.valuation.games import (
    EXACT_LIMIT,
    CompositionGame,
    Player,
    ShapleyResult,
    exact_shapley,
    leave_one_out,
    make_player,
    players_from,
    sampled_shapley,
    shapley,
)
from tmc.server.valuation.logits import CACHE_DIR, ComponentLogits, SplitTensors
from tmc.server.valuation.report import (
    ForgetPreview,
    SiloValue,
    Valuation,
    kept_valuations,
    preview_forget,
    value_version,
)

__all__ = [
    "CACHE_DIR",
    "EXACT_LIMIT",
    "ComponentLogits",
    "CompositionGame",
    "ForgetPreview",
    "Player",
    "ShapleyResult",
    "SiloValue",
    "SplitTensors",
    "Valuation",
    "exact_shapley",
    "kept_valuations",
    "leave_one_out",
    "make_player",
    "players_from",
    "preview_forget",
    "sampled_shapley",
    "shapley",
    "value_version",
]
