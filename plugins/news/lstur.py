"""LSTUR (An et al., ACL 2019): long- and short-term user representations.

Item: title CNN + additive attention, concatenated with category and subcategory embeddings.
User: a GRU over the clicked items (short-term) with a learned user-ID embedding (long-term), either as the
GRU's initial state (`ini`) or concatenated with its last state (`con`). In training the long-term embedding is
masked to zero with probability `mask_probability` (the paper's p = 0.5), which also teaches the model to serve
users it has never seen: they get user index 0, whose embedding is fixed at zero, so an unseen user is
represented by the short-term GRU state alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from once.api import ConvTextEncoder, Dropout, RecipeError, word_embedding
from once_plugins.news.parts import LsturItemOptions, LsturUserOptions


class LsturItemEncoder(nn.Module):
    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: LsturItemOptions, context) -> None:
        super().__init__()
        context.require_text(options.field)
        self.field = options.field
        self.category_fields = [c for c in options.categories if c in context.category_sizes]
        self.embedding = word_embedding(
            context.vocab_size, options.word_dim, context.word_vectors, "model.item.word_dim"
        )
        self.dropout = Dropout(options.dropout)
        self.title = ConvTextEncoder(
            options.word_dim, options.filters, options.window, options.query_dim, options.dropout
        )
        self.categories = nn.ModuleDict(
            {
                c: nn.Embedding(context.category_sizes[c], options.category_dim, padding_idx=0)
                for c in self.category_fields
            }
        )
        self.dim = options.filters + options.category_dim * len(self.category_fields)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]
        title = self.title(self.dropout(self.embedding(tokens)), tokens != 0)  # (items, filters)
        categories = [self.categories[c](features[c]) for c in self.category_fields]  # (items, category_dim) each
        return torch.cat([title, *categories], dim=-1)


class LsturUserEncoder(nn.Module):
    def __init__(self, options: LsturUserOptions, context) -> None:
        super().__init__()
        self.variant, self.mask_probability = options.variant, options.mask_probability
        item_dim = context.item_dim
        if options.variant == "ini":
            user_dim = hidden = item_dim
        else:
            user_dim = options.user_dim or item_dim // 2
            hidden = item_dim - user_dim
            if hidden < 1:
                raise RecipeError(f"user_dim must be below the item size {item_dim}", where="model.user.user_dim")
        self.users = nn.Embedding(context.num_users, user_dim, padding_idx=0)  # 0 = unseen user: zeros
        nn.init.zeros_(self.users.weight)  # as the reference implementation: a GRU state lives in (-1, 1)
        self.gru = nn.GRU(item_dim, hidden, batch_first=True)
        self.dim = item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        # history: (batch, length, item_dim), mask: (batch, length) with padding at the end -> (batch, item_dim)
        long_term = self.users(users)  # (batch, user_dim)
        if self.training and self.mask_probability > 0:
            keep = torch.rand(len(users), 1, device=users.device) >= self.mask_probability
            long_term = long_term * keep
        lengths = mask.sum(-1)
        initial = (
            long_term if self.variant == "ini" else torch.zeros(len(users), self.gru.hidden_size, device=history.device)
        )
        packed = pack_padded_sequence(history, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, initial.unsqueeze(0).contiguous())
        short_term = torch.where((lengths > 0).unsqueeze(-1), last[0], initial)  # an empty history keeps the start
        return short_term if self.variant == "ini" else torch.cat([short_term, long_term], dim=-1)
