"""A Transformer user encoder in the manner of BST (Chen et al., "Behavior Sequence Transformer for E-commerce
Recommendation in Alibaba", 2019): the clicked items' vectors plus a learned embedding of each one's position
(counted from the most recent, so truncating old history keeps the recent positions stable), one Transformer
block (multi-head self-attention and a feed-forward layer, each with a residual and layer normalisation, BST's
LeakyReLU in the feed-forward), padding masked out.

Deviation: BST puts the target item into the sequence and scores with an MLP over the concatenated outputs (a
ranking model). Here the user vector must not depend on the candidate, so that fast evaluation encodes each
user once and any predictor applies: the block's outputs are pooled by additive attention instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from once.api import AdditiveAttention, RecipeError
from once_plugins.users.parts import TransformerUserOptions


class TransformerUserEncoder(nn.Module):
    def __init__(self, options: TransformerUserOptions, context) -> None:
        super().__init__()
        dim = context.item_dim
        if dim % options.heads:
            raise RecipeError(f"{options.heads} heads do not divide the item size {dim}", where="model.user.heads")
        self.positions = nn.Embedding(options.max_history, dim)
        nn.init.normal_(self.positions.weight, 0, 0.02)
        block = nn.TransformerEncoderLayer(
            dim,
            options.heads,
            options.feedforward or 4 * dim,
            options.dropout,
            activation=F.leaky_relu,
            batch_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, options.layers, enable_nested_tensor=False)
        self.pool = AdditiveAttention(dim, options.query_dim)
        self.max_history = options.max_history
        self.dim = dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        # history: (batch, length, item_dim), mask: (batch, length) with padding at the end -> (batch, item_dim)
        lengths = mask.sum(-1, keepdim=True)
        steps = torch.arange(history.shape[1], device=history.device).unsqueeze(0)
        recency = (lengths - 1 - steps).clamp(0, self.max_history - 1)  # 0 = the most recent click
        x = history + self.positions(recency)
        empty = lengths.squeeze(-1) == 0
        padding = ~mask | empty.unsqueeze(-1)  # keep attention finite for an empty history (pooled away below)
        padding[:, 0] &= ~empty
        x = self.blocks(x, src_key_padding_mask=padding)
        return self.pool(x, mask)
