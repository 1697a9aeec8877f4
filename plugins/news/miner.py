"""MINER (Li et al., Findings of ACL 2022): multi-interest matching for news recommendation.

User: poly attention. K learned context codes c_k each attend over the clicked items:
weights_k = softmax_i(c_k . tanh(W h_i)); interest u_k = sum_i weights_k,i h_i, giving (batch, K, dim). A
disagreement regulariser, the mean pairwise cosine similarity of the K interests of each user, is added to the
loss with weight `disagreement_weight` (averaged over the batch's users; an empty history counts zero), so that
the interests spread out.
Predictor: the candidate's dot product with each interest, aggregated over K by `aggregation`: `max`, `mean`, or
`weighted` (target-aware attention, the paper's best: weights = softmax_k(candidate . gelu(V u_k))).

K = 32 context codes of 200 dimensions, as in the paper; the regulariser's weight 0.8 follows the public
reference implementations' default.

Deviation: the paper also biases the poly attention by the category similarity between each clicked item and
the candidates ("category-aware attention weighting"). That needs each click's and each candidate's category
inside the user encoder, and K vectors per user per candidate; ONCE's user-encoder contract passes item vectors,
not item features, and keeps multi-vector and candidate-aware users apart, so the weighting is left out here.
The paper's news encoder is a BERT; the built-in recipes pair MINER with the NRMS word-level encoder (any item
encoder works, `bert` included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from once.api import Pairs, RecipeError, masked_softmax
from once_plugins.news.parts import MinerPredictorOptions, MinerUserOptions


class MinerUserEncoder(nn.Module):
    def __init__(self, options: MinerUserOptions, context) -> None:
        super().__init__()
        self.project = nn.Linear(context.item_dim, options.code_dim, bias=False)
        codes = torch.empty(options.interests, options.code_dim)
        self.codes = nn.Parameter(nn.init.xavier_uniform_(codes, gain=nn.init.calculate_gain("tanh")))
        self.weight = options.disagreement_weight
        self.vectors = options.interests
        self.dim = context.item_dim
        self._terms: dict[str, torch.Tensor] = {}

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        # history: (batch, length, item_dim), mask: (batch, length) -> (batch, K, item_dim)
        scores = torch.tanh(self.project(history)) @ self.codes.T  # (batch, length, K)
        weights = masked_softmax(scores, mask.unsqueeze(-1), dim=1)  # an empty history: all-zero interests
        interests = torch.einsum("blk,bld->bkd", weights, history)
        self._terms = {}
        if self.training and self.weight:
            unit = F.normalize(interests.float(), dim=-1)
            similarity = (unit @ unit.transpose(1, 2)).mean((1, 2))  # (batch,) mean cosine of each user's interests
            # a mean over the batch's rows (an empty history counts 0), so that ranks' shares average exactly
            self._terms = {"disagreement": self.weight * (similarity * mask.any(-1)).mean()}
        return interests

    def auxiliary_losses(self) -> dict[str, torch.Tensor]:
        """The weighted disagreement regulariser of the last training forward."""
        return self._terms


class MinerPredictor(nn.Module):
    retrieves_by_inner_product = True  # each interest's score is its inner product with the candidate

    def __init__(self, options: MinerPredictorOptions, context) -> None:
        super().__init__()
        if context.candidate_aware_users:
            raise RecipeError(
                "the miner predictor combines a user's K interests; this user encoder gives one vector per candidate",
                where="model.predictor",
                hint="Use model.predictor: {name: dot} with a candidate-aware user encoder.",
            )
        self.aggregation = options.aggregation
        weighted = options.aggregation == "weighted"
        self.target = nn.Linear(context.user_dim, context.item_dim, bias=False) if weighted else None

    def forward(self, users: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        # users: (batch, K, dim) or (batch, dim); candidates: (batch, candidates, dim) -> (batch, candidates)
        if users.dim() == 2:
            users = users.unsqueeze(1)
        matching = candidates @ users.transpose(1, 2)  # (batch, candidates, K)
        if self.aggregation == "max":
            return matching.max(-1).values
        if self.aggregation == "mean":
            return matching.mean(-1)
        weights = torch.softmax(candidates @ F.gelu(self.target(users)).transpose(1, 2), dim=-1)
        return (weights * matching).sum(-1)
