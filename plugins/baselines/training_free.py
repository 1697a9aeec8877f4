"""Training-free baselines, built from the same item encoder / user encoder / predictor parts as every model.

Recipes pair them with `train.epochs: 0`:
- random:     item `random` (fixed random vectors) + user `mean`  -> an arbitrary but fixed score per pair;
- popularity: item `popularity` (log clicks in training) + user `ones` -> the most clicked first, for everyone;
- overlap:    item `overlap` (sqrt-IDF-weighted word presence) + user `max` (union of the history's words)
              -> the dot product is the summed IDF of the words a candidate shares with the history.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.baselines.parts import OverlapOptions, PoolOptions, PopularityOptions, RandomOptions


class RandomItems(nn.Module):
    """A fixed standard-normal vector per item."""

    encodes_new_items = False  # a vector per known item, none for a new one

    def __init__(self, options: RandomOptions, context) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(options.seed)
        self.register_buffer("vectors", torch.randn(len(context.item_clicks), options.dim, generator=generator))
        self.dim = options.dim

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.vectors[features["item"]]


class PopularityItems(nn.Module):
    """log(1 + clicks in training) as a 1-d vector."""

    encodes_new_items = False  # a vector per known item, none for a new one

    def __init__(self, options: PopularityOptions, context) -> None:
        super().__init__()
        self.register_buffer("popularity", torch.log1p(context.item_clicks).unsqueeze(-1))
        self.dim = 1

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.popularity[features["item"]]


class OverlapItems(nn.Module):
    """Word presence over the vocabulary, weighted by sqrt(IDF) so that a dot product of two sums IDF."""

    def __init__(self, options: OverlapOptions, context) -> None:
        super().__init__()
        context.require_text(options.field)
        self.field, self.vocab_size = options.field, context.vocab_size
        tokens = context.item_features[options.field][1:].sort(dim=1).values  # row 0 is the padding item
        first = torch.ones_like(tokens, dtype=torch.bool)
        first[:, 1:] = tokens[:, 1:] != tokens[:, :-1]  # count each word once per item
        frequency = torch.bincount(tokens[first], minlength=self.vocab_size).float().clamp(min=1)
        weights = torch.log(max(len(tokens), 1) / frequency).clamp(min=0).sqrt()
        weights[list(context.special_ids)] = 0  # padding and unknown words are no words to share
        self.register_buffer("weights", weights)
        self.dim = context.vocab_size

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]
        present = torch.zeros(len(tokens), self.vocab_size, device=tokens.device)
        present.scatter_(1, tokens, 1.0)
        return present * self.weights


class MeanUser(nn.Module):
    """The mean of the clicked items' vectors (zeros for an empty history)."""

    def __init__(self, options: PoolOptions, context) -> None:
        super().__init__()
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        weights = mask.float() / mask.sum(-1, keepdim=True).clamp(min=1)
        return torch.einsum("bl,bld->bd", weights, history)


class MaxUser(nn.Module):
    """The element-wise maximum of the clicked items' vectors (zeros for an empty history)."""

    def __init__(self, options: PoolOptions, context) -> None:
        super().__init__()
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        masked = history.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        pooled = masked.max(dim=1).values
        return torch.where(mask.any(-1, keepdim=True), pooled, torch.zeros_like(pooled))


class OnesUser(nn.Module):
    """A vector of ones: with the dot predictor, the score is the sum of the candidate's vector."""

    def __init__(self, options: PoolOptions, context) -> None:
        super().__init__()
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(users), self.dim, device=history.device)
