"""FinalMLP (Mao, Zhu, Zhu, Dong, Wang, Zhang and Yang, AAAI 2023): two MLP streams with their own feature
selection, fused by a multi-head bilinear layer.

Each stream sees the flattened fields x gated by its feature selection, g = 2 sigmoid(MLP(context)), before its
MLP; the streams' outputs o1, o2 are cut into `heads` chunks and fused as
logit = sum_h b_h + w1_h . o1_h + w2_h . o2_h + o1_h^T W3_h o2_h.

Choice: the paper conditions each gate on a chosen set of features (or a learned vector). Here the first stream's
gate is conditioned on the user's field and the second's on the candidate's, so that one stream selects by who
reads and the other by what is read.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import RecipeError
from once_plugins.predictors.fields import FieldPredictor, mlp, mlp_output
from once_plugins.predictors.parts import FinalMlpOptions


class FinalMlpPredictor(FieldPredictor):
    def __init__(self, options: FinalMlpOptions, context) -> None:
        super().__init__(options, context)
        size, dim = self.fields.count * self.fields.dim, self.fields.dim
        self.user_gate = mlp(dim, options.selection_hidden, 0.0, out=size)
        self.item_gate = mlp(dim, options.selection_hidden, 0.0, out=size)
        self.stream1 = mlp(size, options.mlp1, options.dropout, out=None)
        self.stream2 = mlp(size, options.mlp2, options.dropout, out=None)
        first, second, heads = mlp_output(size, options.mlp1), mlp_output(size, options.mlp2), options.heads
        if first % heads or second % heads:
            raise RecipeError(
                f"finalmlp's {heads} heads must divide both streams' output sizes ({first} and {second})",
                where="model.predictor.heads",
            )
        self.heads = heads
        self.w1 = nn.Parameter(torch.randn(heads, first // heads) * (first // heads) ** -0.5)
        self.w2 = nn.Parameter(torch.randn(heads, second // heads) * (second // heads) ** -0.5)
        self.w3 = nn.Parameter(torch.randn(heads, first // heads, second // heads) * (first // heads) ** -0.5 / 8)
        self.bias = nn.Parameter(torch.zeros(heads))

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        x = fields.flatten(1)
        o1 = self.stream1(x * 2 * torch.sigmoid(self.user_gate(fields[:, 0])))
        o2 = self.stream2(x * 2 * torch.sigmoid(self.item_gate(fields[:, 1])))
        o1, o2 = o1.view(len(x), self.heads, -1), o2.view(len(x), self.heads, -1)
        bilinear = torch.einsum("nhi,hij,nhj->nh", o1, self.w3, o2)
        return (self.bias + (o1 * self.w1).sum(-1) + (o2 * self.w2).sum(-1) + bilinear).sum(-1)
