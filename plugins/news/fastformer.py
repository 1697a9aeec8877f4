"""Fastformer (Wu et al., 2021, "Fastformer: Additive Attention Can Be All You Need"), as item and user encoder.

One Fastformer attention layer, per head: an additive attention pools the queries into a global query q; each key
is multiplied element-wise by q and an additive attention pools those into a global key k; each value (the query
itself, as in the authors' code) is multiplied element-wise by k, linearly transformed and added back to its
query. Every step is linear in the sequence length. Attention logits are scaled by 1/sqrt(head size).

Item: word embeddings -> dropout -> `layers` Fastformer layers -> dropout -> additive attention pooling.
User: `layers` Fastformer layers over the clicked items' vectors -> additive attention pooling.

Following the authors' note for news recommendation, there is no layer normalisation, feed-forward block or
position embedding. Sizes follow the paper's news setting: 256 hidden, 16 heads; dropout 0.2.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import AdditiveAttention, Dropout, RecipeError, masked_softmax, word_embedding
from once_plugins.news.parts import FastformerItemOptions, FastformerUserOptions


class FastformerAttention(nn.Module):
    """One Fastformer layer: (batch, length, in_dim) with a (batch, length) mask -> (batch, length, dim)."""

    def __init__(self, in_dim: int, dim: int, heads: int, where: str) -> None:
        super().__init__()
        if dim % heads:
            raise RecipeError(f"{heads} heads do not divide the size {dim}", where=where)
        self.heads, self.head_dim = heads, dim // heads
        self.query = nn.Linear(in_dim, dim)
        self.key = nn.Linear(in_dim, dim)
        self.query_score = nn.Linear(dim, heads)  # one additive-attention vector per head
        self.key_score = nn.Linear(dim, heads)
        self.transform = nn.Linear(dim, dim)

    def _pool(self, x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per head, the softmax-weighted sum over positions: (batch, length, dim) -> (batch, 1, dim)."""
        batch, length, _ = x.shape
        weights = masked_softmax(scores / self.head_dim**0.5, mask.unsqueeze(-1), dim=1)  # (batch, length, heads)
        heads = x.view(batch, length, self.heads, self.head_dim)
        return torch.einsum("blh,blhd->bhd", weights, heads).reshape(batch, 1, -1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        queries, keys = self.query(x), self.key(x)
        global_query = self._pool(queries, self.query_score(queries), mask)
        mixed = keys * global_query  # (batch, length, dim): every key meets the global query
        global_key = self._pool(mixed, self.key_score(mixed), mask)
        return self.transform(queries * global_key) + queries  # values are the queries


class FastformerItemEncoder(nn.Module):
    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: FastformerItemOptions, context) -> None:
        super().__init__()
        self.field = context.require_text(options.field)
        vectors = context.word_vectors
        self.embedding = word_embedding(context.vocab_size, options.word_dim, vectors, "model.item.word_dim")
        self.dropout = Dropout(options.dropout)
        sizes = [options.word_dim] + [options.dim] * options.layers
        self.layers = nn.ModuleList(
            FastformerAttention(a, b, options.heads, "model.item.heads") for a, b in zip(sizes, sizes[1:], strict=False)
        )
        self.pool = AdditiveAttention(options.dim, options.query_dim)
        self.dim = options.dim

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]  # (items, tokens)
        mask = tokens != 0
        x = self.dropout(self.embedding(tokens))
        for layer in self.layers:
            x = layer(x, mask)
        return self.pool(self.dropout(x), mask)  # (items, dim)


class FastformerUserEncoder(nn.Module):
    def __init__(self, options: FastformerUserOptions, context) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            FastformerAttention(context.item_dim, context.item_dim, options.heads, "model.user.heads")
            for _ in range(options.layers)
        )
        self.pool = AdditiveAttention(context.item_dim, options.query_dim)
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        # history: (batch, length, item_dim), mask: (batch, length) -> (batch, item_dim)
        x = history
        for layer in self.layers:
            x = layer(x, mask)
        return self.pool(x, mask)
