"""AutoInt (Song, Shi, Xiao, Duan, Xu, Zhang and Tang, CIKM 2019): fields interact through stacked multi-head
self-attention layers.

Each interacting layer maps every field with per-head query, key and value projections (size `attention_dim`),
attends over the fields, concatenates the heads and adds a residual projection of its input, then ReLU. The last
layer's fields, concatenated, give the logit through a linear layer; AutoInt+ (`hidden` not empty) adds a deep
network over the input fields beside it.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.predictors.fields import FieldPredictor, mlp
from once_plugins.predictors.parts import AutoIntOptions


class InteractingLayer(nn.Module):
    """(n, fields, inputs) -> (n, fields, heads * attention_dim), equivariant to the order of the fields."""

    def __init__(self, inputs: int, heads: int, attention_dim: int, residual: bool) -> None:
        super().__init__()
        size = heads * attention_dim
        self.heads, self.attention_dim = heads, attention_dim
        self.query = nn.Linear(inputs, size, bias=False)
        self.key = nn.Linear(inputs, size, bias=False)
        self.value = nn.Linear(inputs, size, bias=False)
        self.residual = nn.Linear(inputs, size, bias=False) if residual else None

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        n, count, _ = fields.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(n, count, self.heads, self.attention_dim).transpose(1, 2)

        query, key, value = split(self.query(fields)), split(self.key(fields)), split(self.value(fields))
        weights = torch.softmax(query @ key.transpose(-1, -2), -1)  # the paper's <W_q e_m, W_k e_k>, unscaled
        out = (weights @ value).transpose(1, 2).reshape(n, count, -1)
        if self.residual is not None:
            out = out + self.residual(fields)
        return torch.relu(out)


class AutoIntPredictor(FieldPredictor):
    def __init__(self, options: AutoIntOptions, context) -> None:
        super().__init__(options, context)
        count, size = self.fields.count, self.fields.dim
        layers = []
        for _ in range(options.layers):
            layers.append(InteractingLayer(size, options.heads, options.attention_dim, options.residual))
            size = options.heads * options.attention_dim
        self.interacting = nn.Sequential(*layers)
        self.output = nn.Linear(count * size, 1)
        self.deep = mlp(count * self.fields.dim, options.hidden, options.dropout) if options.hidden else None

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        logit = self.output(self.interacting(fields).flatten(1)).squeeze(-1)
        if self.deep is not None:
            logit = logit + self.deep(fields.flatten(1)).squeeze(-1)
        return logit
