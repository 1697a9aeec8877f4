"""The dot-product click predictor of the classic models."""

from __future__ import annotations

import torch
from torch import nn

from once.api import Pairs, RecipeError
from once_plugins.predictors.parts import DotOptions


class DotPredictor(nn.Module):
    """score = user . candidate"""

    retrieves_by_inner_product = True

    def __init__(self, options: DotOptions, context) -> None:
        super().__init__()
        if context.user_vectors > 1:
            raise RecipeError(
                f"the user encoder gives {context.user_vectors} vectors per user and the dot predictor scores one",
                where="model.predictor",
                hint="Use a predictor that combines several interests, e.g. model.predictor: {name: miner}.",
            )
        if context.user_dim != context.item_dim:
            raise RecipeError(
                f"the user encoder gives {context.user_dim}-d vectors and the item encoder {context.item_dim}-d; "
                "the dot predictor needs equal sizes",
                where="model.predictor",
                hint="The sizes are options of model.item and model.user (once plugins show item_encoder NAME); "
                "change them together. NRMS's user encoder follows the item size when model.user.head_dim is unset.",
            )
        self.per_candidate = context.candidate_aware_users

    def forward(self, user: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        # user: (batch, dim), or (batch, candidates, dim) from a candidate-aware user encoder;
        # candidates: (batch, candidates, dim) -> (batch, candidates)
        if self.per_candidate:
            return (user * candidates).sum(-1)
        return torch.einsum("bd,bcd->bc", user, candidates)
