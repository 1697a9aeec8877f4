"""The general user encoders of this package (attention pooling, GRU, Transformer): their recipe options and where
each lives. Mean and max pooling are the baselines package's.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it. The models live one per file beside it.
"""

from __future__ import annotations

from pydantic import Field

from once.api import Options, hookimpl


class AttentionUserOptions(Options):
    query_dim: int = Field(200, ge=1, description="additive attention query size")


class GruUserOptions(Options):
    layers: int = Field(1, ge=1, description="stacked GRU layers")
    dropout: float = Field(0.0, ge=0, lt=1, description="between GRU layers (layers > 1)")


class TransformerUserOptions(Options):
    heads: int = Field(8, ge=1, description="attention heads (must divide the item vector size)")
    layers: int = Field(1, ge=1, description="Transformer blocks (BST: 1)")
    feedforward: int | None = Field(None, ge=1, description="feed-forward size; default 4 x the item size")
    dropout: float = Field(0.1, ge=0, lt=1)
    max_history: int = Field(100, ge=1, description="positions with their own embedding (most recent first)")
    query_dim: int = Field(200, ge=1, description="additive attention query size of the pooling")


@hookimpl
def register_user_encoders(register):
    register("attention", "once_plugins.users.attention:AttentionUserEncoder", AttentionUserOptions)
    register("gru", "once_plugins.users.gru:GruUserEncoder", GruUserOptions)
    register("transformer", "once_plugins.users.transformer:TransformerUserEncoder", TransformerUserOptions)
