"""A GRU user encoder, GRU4Rec-style (Hidasi et al., ICLR 2016): the clicked items' vectors, oldest first, through
a GRU; the user is its last hidden state. The hidden size is the item vector size, so any item encoder and the
dot predictor combine with it. An empty history gives the zero initial state.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from once_plugins.users.parts import GruUserOptions


class GruUserEncoder(nn.Module):
    def __init__(self, options: GruUserOptions, context) -> None:
        super().__init__()
        dropout = options.dropout if options.layers > 1 else 0.0
        self.gru = nn.GRU(context.item_dim, context.item_dim, options.layers, batch_first=True, dropout=dropout)
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        # history: (batch, length, item_dim), mask: (batch, length) with padding at the end -> (batch, item_dim)
        lengths = mask.sum(-1)
        packed = pack_padded_sequence(history, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # (layers, batch, dim)
        return torch.where((lengths > 0).unsqueeze(-1), last[-1], torch.zeros_like(last[-1]))
