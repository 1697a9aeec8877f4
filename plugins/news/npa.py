"""NPA (Wu et al., KDD 2019): neural news recommendation with personalized attention.

A user-ID embedding (50-d) is turned into two preference queries, q_w = ReLU(V_w e_u + v_w) for words and
q_d = ReLU(V_d e_u + v_d) for news (200-d each).
Item: title word embeddings (300-d) -> dropout -> CNN (400 filters, window 3, ReLU) -> dropout -> personalized
attention, weights softmax_i(c_i . tanh(W q_w + b)): the same title is read differently by different users.
User: personalized attention over the clicked items' vectors with q_d.

The item encoder reads the user, so an item has no vector of its own: it is user-conditioned (docs/plugins.md:
what that costs evaluation). Deviation: the paper shares one user embedding between the two queries; here the
item encoder and the user encoder each own one (the engine builds them as separate parts), of the same size.
A user not seen in training has index 0, whose embedding is fixed at zero: its queries are the layers' biases.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import Dropout, RecipeError, convolve_words, masked_softmax, word_embedding
from once_plugins.news.parts import NpaItemOptions, NpaUserOptions


class PersonalizedQuery(nn.Module):
    """A user's preference query: ReLU(V e_u + v) from a user-ID embedding (user 0, unseen: zeros)."""

    def __init__(self, users: int, user_dim: int, query_dim: int) -> None:
        super().__init__()
        self.users = nn.Embedding(users, user_dim, padding_idx=0)
        self.project = nn.Linear(user_dim, query_dim)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(self.users(users)))


class PersonalizedAttention(nn.Module):
    """Pool (n, length, dim) into (n, dim) with weights softmax_i(x_i . tanh(W q + b)) for each row's query q."""

    def __init__(self, query_dim: int, dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(query_dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("nld,nd->nl", x, torch.tanh(self.key(query)))
        return torch.einsum("nl,nld->nd", masked_softmax(scores, mask), x)


class NpaItemEncoder(nn.Module):
    user_conditioned = True  # features carry "user": the reader of each item occurrence
    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: NpaItemOptions, context) -> None:
        super().__init__()
        self.field = context.require_text(options.field)
        vectors = context.word_vectors
        self.embedding = word_embedding(context.vocab_size, options.word_dim, vectors, "model.item.word_dim")
        self.dropout = Dropout(options.dropout)
        if options.window % 2 == 0:
            raise RecipeError(f"the CNN window must be odd so that every word is centred, got {options.window}",
                              where="model.item.window")
        self.conv = nn.Conv1d(options.word_dim, options.filters, options.window, padding=options.window // 2)
        self.query = PersonalizedQuery(context.num_users, options.user_dim, options.query_dim)
        self.attention = PersonalizedAttention(options.query_dim, options.filters)
        self.dim = options.filters

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]  # (n, tokens)
        mask = tokens != 0
        words = self.dropout(self.embedding(tokens)) * mask.unsqueeze(-1)  # padding: zeros, like the border
        context = self.dropout(torch.relu(convolve_words(self.conv, words)))  # (n, tokens, filters)
        return self.attention(context, mask, self.query(features["user"]))


class NpaUserEncoder(nn.Module):
    def __init__(self, options: NpaUserOptions, context) -> None:
        super().__init__()
        self.query = PersonalizedQuery(context.num_users, options.user_dim, options.query_dim)
        self.attention = PersonalizedAttention(options.query_dim, context.item_dim)
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return self.attention(history, mask, self.query(users))
