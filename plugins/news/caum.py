"""CAUM (Qi et al., SIGIR 2022, "News Recommendation with Candidate-aware User Modeling"): the user vector depends
on the candidate being scored.

User, for each candidate c (all of an impression's candidates at once):
- candidate-aware CNN: each clicked item with its two neighbours and the candidate, [h_i-1; h_i; h_i+1; c],
  through a dense layer (local context of a click, read in the light of the candidate);
- candidate-aware self-attention: [c; h_i] through a dense layer, then multi-head self-attention over the
  clicks (long-range relations among them, again conditioned on c);
- the two concatenated, dropout, a dense layer: u_i;
- candidate-aware attention pooling: weights from a 2-layer tanh network over [u_i; c], softmax over the clicks;
  the user vector is the weighted sum of the u_i. The score is its dot product with the candidate
  (the `dot` predictor, which takes one user vector per candidate from a candidate-aware user encoder).
Sizes follow the authors' code: every layer at the item vector's size (400 there), 20 heads (or the most below
20 that divide the item size), attention hidden
sizes (item size, 256), dropout 0.2.

Deviations: the authors' news encoder also reads title entities and the category; the built-in recipes pair
CAUM with the NRMS title encoder (Goodreads links no entities; on MIND, `items.entities` and the `dkn` item
encoder carry them, as DKN does). At the history's
borders the CNN sees zeros where the authors' code wraps around to the other end.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import Dropout, MultiHeadSelfAttention, RecipeError, masked_softmax
from once_plugins.news.parts import CaumUserOptions


class CaumUserEncoder(nn.Module):
    candidate_aware = True  # forward also takes the candidates' vectors and gives one user vector per candidate

    def __init__(self, options: CaumUserOptions, context) -> None:
        super().__init__()
        dim = context.item_dim
        heads = options.heads or max(h for h in range(1, 21) if dim % h == 0)
        if dim % heads:
            raise RecipeError(f"{heads} heads do not divide the item size {dim}", where="model.user.heads")
        self.dropout = Dropout(options.dropout)
        self.cnn = nn.Linear(4 * dim, dim)
        self.mix = nn.Linear(2 * dim, dim)
        self.attention = MultiHeadSelfAttention(dim, heads, dim // heads)
        self.combine = nn.Linear(2 * dim, dim)
        self.score = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.Tanh(), nn.Linear(dim, options.attention_dim), nn.Tanh(),
            nn.Linear(options.attention_dim, 1),
        )
        self.dim = dim

    def forward(
        self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        # history: (batch, length, dim), mask: (batch, length), candidates: (batch, C, dim) -> (batch, C, dim)
        batch, length, dim = history.shape
        count = candidates.shape[1]
        clicks = self.dropout(history * mask.unsqueeze(-1))  # padding is exact zeros, like the borders
        clicks = clicks.unsqueeze(1).expand(batch, count, length, dim).reshape(batch * count, length, dim)
        flat_mask = mask.unsqueeze(1).expand(batch, count, length).reshape(batch * count, length)
        candidate = candidates.reshape(batch * count, 1, dim).expand(-1, length, -1)
        left = torch.nn.functional.pad(clicks, (0, 0, 1, 0))[:, :length]
        right = torch.nn.functional.pad(clicks, (0, 0, 0, 1))[:, 1:]
        local = self.cnn(torch.cat([left, clicks, right, candidate], dim=-1))
        relations = self.attention(self.mix(torch.cat([candidate, clicks], dim=-1)), flat_mask)
        units = self.combine(self.dropout(torch.cat([local, relations], dim=-1)))  # (batch*C, length, dim)
        weights = masked_softmax(self.score(torch.cat([units, candidate], dim=-1)).squeeze(-1), flat_mask)
        return torch.einsum("nl,nld->nd", weights, units).view(batch, count, dim)
