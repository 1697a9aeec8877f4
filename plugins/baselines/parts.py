"""The training-free baselines: their recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from pydantic import Field

from once.api import Options, hookimpl


class RandomOptions(Options):
    dim: int = Field(16, ge=1)
    seed: int = 0


class PopularityOptions(Options):
    """No options."""


class OverlapOptions(Options):
    field: str = Field("title", description="the tokenized text field whose words are compared")


class PoolOptions(Options):
    """No options."""


@hookimpl
def register_item_encoders(register):
    register("random", "once_plugins.baselines.training_free:RandomItems", RandomOptions)
    register("popularity", "once_plugins.baselines.training_free:PopularityItems", PopularityOptions)
    register("overlap", "once_plugins.baselines.training_free:OverlapItems", OverlapOptions)


@hookimpl
def register_user_encoders(register):
    register("mean", "once_plugins.baselines.training_free:MeanUser", PoolOptions)
    register("max", "once_plugins.baselines.training_free:MaxUser", PoolOptions)
    register("ones", "once_plugins.baselines.training_free:OnesUser", PoolOptions)
