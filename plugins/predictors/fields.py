"""What the CTR predictors share: the fields they cross, the deep network they stack, and their common forward.

A CTR model crosses fields of one size d. Here the fields of a (user, candidate) pair are, in order: the user
vector, the candidate's vector (each projected to d when its size differs), then each side field the recipe names
in `fields`, as a learned d-sized embedding: `user` (the user's id; users unseen in training share id 0),
`popularity` (the candidate's training clicks as floor(log2(1 + clicks)), 16 buckets) and any item category field
(`category`, `subcategory`...), initialised near zero (std 1e-4) so that they start without drowning the content
vectors. An item the tables do not hold (one posted to `once serve`) reads id 0 (no
category, no clicks).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from once.api import Dropout, Pairs, RecipeError
from once_plugins.predictors.parts import FieldOptions

POPULARITY_BUCKETS = 16


def mlp(
    inputs: int,
    hidden: list[int],
    dropout: float,
    out: int | None = 1,
    activation: Callable[[int], nn.Module] | None = None,
) -> nn.Sequential:
    """Linear -> activation (ReLU by default, or `activation(size)`) -> dropout per hidden size, then a linear map
    to `out` (none when `out` is None: the last hidden layer is the output)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(inputs, size), activation(size) if activation else nn.ReLU(), Dropout(dropout)]
        inputs = size
    if out is not None:
        layers.append(nn.Linear(inputs, out))
    return nn.Sequential(*layers)


def mlp_output(inputs: int, hidden: list[int]) -> int:
    """The size `mlp(inputs, hidden, ..., out=None)` returns."""
    return hidden[-1] if hidden else inputs


class Fields(nn.Module):
    """(users, candidates, pairs) -> (batch, candidates, fields, dim)."""

    def __init__(self, options: FieldOptions, context, key: str = "model.predictor") -> None:
        super().__init__()
        if context.user_vectors > 1:
            raise RecipeError(
                f"the user encoder gives {context.user_vectors} vectors per user and a CTR predictor crosses one",
                where=key,
                hint="Use a single-vector user encoder, or model.predictor: {name: miner} for several interests.",
            )
        self.dim = dim = options.field_dim or context.item_dim
        self.user_projection = nn.Identity() if context.user_dim == dim else nn.Linear(context.user_dim, dim)
        self.item_projection = nn.Identity() if context.item_dim == dim else nn.Linear(context.item_dim, dim)
        self.side = list(options.fields)
        self.embeddings = nn.ModuleDict()
        for name in self.side:
            if self.side.count(name) > 1:
                raise RecipeError(f"the side field '{name}' is listed twice", where=f"{key}.fields")
            if name == "user":
                self.embeddings[name] = nn.Embedding(context.num_users, dim)
                continue
            if name == "popularity":
                buckets = torch.log2(1 + context.item_clicks).floor().long().clamp(max=POPULARITY_BUCKETS - 1)
                self.register_buffer(f"ids_{name}", buckets, persistent=False)
                self.embeddings[name] = nn.Embedding(POPULARITY_BUCKETS, dim)
            elif name in context.category_sizes:
                self.register_buffer(f"ids_{name}", context.item_features[name], persistent=False)
                self.embeddings[name] = nn.Embedding(max(1, context.category_sizes[name]), dim)
            else:
                known = ["user", "popularity", *context.category_sizes]
                raise RecipeError(
                    f"'{name}' is no side field of this data",
                    where=f"{key}.fields",
                    hint=f"Side fields here: {', '.join(known)} (category fields come from items.categories).",
                )
        for embedding in self.embeddings.values():  # small, as CTR practice starts them (FuxiCTR: std 1e-4)
            nn.init.normal_(embedding.weight, std=1e-4)
        self.count = 2 + len(self.side)

    def forward(self, users: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        # users: (batch, user_dim), or (batch, C, user_dim) from a candidate-aware encoder; candidates (batch, C, d)
        batch, count = candidates.shape[:2]
        user = self.user_projection(users)
        if user.dim() == 2:
            user = user.unsqueeze(1).expand(batch, count, -1)
        fields = [user, self.item_projection(candidates)]
        for name in self.side:
            if name == "user":
                fields.append(self.embeddings[name](pairs.users).unsqueeze(1).expand(batch, count, -1))
                continue
            table = getattr(self, f"ids_{name}")
            known = pairs.items < len(table)
            ids = torch.where(known, table[pairs.items.clamp(max=len(table) - 1)], torch.zeros_like(pairs.items))
            fields.append(self.embeddings[name](ids))
        return torch.stack(fields, dim=2)


class FieldPredictor(nn.Module):
    """A CTR predictor: its `interact` maps (pairs, fields, dim) to (pairs,) logits."""

    def __init__(self, options: FieldOptions, context) -> None:
        super().__init__()
        self.fields = Fields(options, context)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, users: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        fields = self.fields(users, candidates, pairs)
        batch, count, number, dim = fields.shape
        return self.interact(fields.reshape(batch * count, number, dim)).view(batch, count)
