"""Attention pooling: the user is an additive-attention-weighted sum of the clicked items' vectors (NAML's and
TANR's user encoder, Wu et al., IJCAI 2019 and ACL 2019). Any item encoder combines with it; an empty history gives
the zero vector. NAML and TANR register it as their user encoders, with their own options.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import AdditiveAttention
from once_plugins.users.parts import AttentionUserOptions


class AttentionUserEncoder(nn.Module):
    def __init__(self, options: AttentionUserOptions, context) -> None:
        super().__init__()
        self.pool = AdditiveAttention(context.item_dim, options.query_dim)
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return self.pool(history, mask)  # (batch, item_dim)
