"""DIN, the Deep Interest Network (Zhou, Zhu, Song, Fan, Zhu, Ma, Yan, Jin, Li and Gai, KDD 2018).

A history-attending predictor: for each candidate, a local activation unit weighs every clicked item of the
history by an MLP over [e_j, v, e_j - v, e_j * v] (the clicked item's and the candidate's vectors, as the authors'
code builds it), and the weights are not normalised by a softmax, so the interest keeps how strongly the history
relates to the candidate. The weighted sum of the history's vectors joins the fields (user vector, candidate, side
fields) and a deep network with Dice activations (or PReLU) gives the logit.

Dice (the paper's data-adaptive activation): f(s) = p(s) s + (1 - p(s)) alpha s with p(s) = sigmoid of s
normalised by its batch statistics in training and their running averages in evaluation.

Deviation: the paper's mini-batch aware regularisation targets huge sparse id embeddings; the items here are
vectors from an item encoder, so it is left out (train.weight_decay regularises every parameter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from once.api import Pairs
from once_plugins.predictors.fields import Fields, mlp
from once_plugins.predictors.parts import DinOptions


class Dice(nn.Module):
    """(n, size) -> (n, size); a batch of one row is normalised by the running statistics, as in evaluation."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_var", torch.ones(size))
        self.alpha = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_statistics = self.training and len(x) > 1
        normalised = F.batch_norm(x, self.running_mean, self.running_var, training=batch_statistics, eps=1e-8)
        p = torch.sigmoid(normalised)
        return p * x + (1 - p) * self.alpha * x


class DinPredictor(nn.Module):
    attends_history = True

    def __init__(self, options: DinOptions, context) -> None:
        super().__init__()
        self.fields = Fields(options, context)
        activation = Dice if options.activation == "dice" else nn.PReLU
        item_dim = context.item_dim
        self.unit = mlp(4 * item_dim, options.attention_hidden, 0.0, activation=activation)
        self.deep = mlp(
            (self.fields.count + 1) * self.fields.dim, options.hidden, options.dropout, activation=activation
        )

    def interest(
        self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor, real: torch.Tensor
    ) -> torch.Tensor:
        """(batch, history, d) clicked items with their (batch, history) mask, (batch, C, d) candidates and their
        (batch, C) mask of real candidates -> (batch, C, d): each candidate's weighted sum of the history. The unit
        runs on (real click, real candidate) pairs only, so padding never enters Dice's batch statistics."""
        batch, count = candidates.shape[:2]
        b, c, j = torch.nonzero(mask.unsqueeze(1) & real.unsqueeze(2), as_tuple=True)
        clicked, candidate = history[b, j], candidates[b, c]
        weights = self.unit(torch.cat([clicked, candidate, clicked - candidate, clicked * candidate], -1))
        weights = weights.squeeze(-1)
        table = weights.new_zeros(batch, count, history.shape[1]).index_put((b, c, j), weights)
        return table @ history

    def forward(self, users: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        real = pairs.items != 0  # padding candidates (ranking batches, trimmed evaluation chunks) score 0
        interest = self.interest(pairs.history_vectors, pairs.history != 0, candidates, real)
        fields = torch.cat(
            [self.fields(users, candidates, pairs), self.fields.item_projection(interest).unsqueeze(2)], 2
        )
        scores = fields.new_zeros(real.shape)  # the deep network (and Dice's statistics) sees real pairs only
        return scores.index_put(torch.nonzero(real, as_tuple=True), self.deep(fields[real].flatten(1)).squeeze(-1))
