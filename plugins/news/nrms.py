"""NRMS (Wu et al., EMNLP 2019): multi-head self-attention over words, then over clicked items.

Item: word embeddings -> dropout -> multi-head self-attention -> dropout -> additive attention.
User: multi-head self-attention over the clicked items' vectors -> additive attention.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import AdditiveAttention, Dropout, MultiHeadSelfAttention, RecipeError, word_embedding
from once_plugins.news.parts import NrmsItemOptions, NrmsUserOptions


class NrmsItemEncoder(nn.Module):
    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: NrmsItemOptions, context) -> None:
        super().__init__()
        context.require_text(options.field)
        self.field = options.field
        self.embedding = word_embedding(
            context.vocab_size, options.word_dim, context.word_vectors, "model.item.word_dim"
        )
        self.dropout = Dropout(options.dropout)
        self.attention = MultiHeadSelfAttention(options.word_dim, options.heads, options.head_dim)
        self.pool = AdditiveAttention(options.heads * options.head_dim, options.query_dim)
        self.dim = options.heads * options.head_dim

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]  # (items, tokens)
        mask = tokens != 0
        words = self.dropout(self.embedding(tokens))  # (items, tokens, word_dim)
        words = self.dropout(self.attention(words, mask))  # (items, tokens, dim)
        return self.pool(words, mask)  # (items, dim)


class NrmsUserEncoder(nn.Module):
    def __init__(self, options: NrmsUserOptions, context) -> None:
        super().__init__()
        head_dim = options.head_dim
        if head_dim is None:  # the paper's user encoder has the item encoder's size (16 heads x 16)
            if context.item_dim % options.heads:
                raise RecipeError(
                    f"the item vectors have {context.item_dim} dimensions, which {options.heads} heads do not divide",
                    where="model.user.heads",
                    hint="Choose heads that divide the item size, or set model.user.head_dim.",
                )
            head_dim = context.item_dim // options.heads
        self.attention = MultiHeadSelfAttention(context.item_dim, options.heads, head_dim)
        self.pool = AdditiveAttention(options.heads * head_dim, options.query_dim)
        self.dim = options.heads * head_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        # history: (batch, length, item_dim), mask: (batch, length) -> (batch, dim)
        return self.pool(self.attention(history, mask), mask)
