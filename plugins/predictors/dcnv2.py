"""DCN-V2 (Wang, Shivanna, Cheng, Jain, Lin, Hong and Chi, WWW 2021).

Each cross layer has a full weight matrix: x_{l+1} = x0 * (W_l x_l + b_l) + x_l; with `rank` it is the paper's
mixture of low-rank experts, x_{l+1} = sum_i G_i(x_l) (x0 * E_i(x_l)) + x_l with
E_i(x) = U_i tanh(C_i tanh(V_i^T x)) + b_l and softmax gates G_i. The deep network runs beside the cross
network (parallel) or on its output (stacked), and a linear layer gives the logit.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.predictors.crossing import CrossAndDeep
from once_plugins.predictors.parts import DcnV2Options


class FullRankCross(nn.Module):
    def __init__(self, size: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class LowRankMixtureCross(nn.Module):
    def __init__(self, size: int, layers: int, rank: int, experts: int) -> None:
        super().__init__()
        scale = size**-0.5
        self.v = nn.Parameter(torch.randn(layers, experts, size, rank) * scale)
        self.c = nn.Parameter(torch.randn(layers, experts, rank, rank) * rank**-0.5)
        self.u = nn.Parameter(torch.randn(layers, experts, rank, size) * rank**-0.5)
        self.bias = nn.Parameter(torch.zeros(layers, 1, size))  # b_l, shared by the layer's experts
        self.gates = nn.ModuleList(nn.Linear(size, experts, bias=False) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer, gate in enumerate(self.gates):
            low = torch.tanh(torch.einsum("nd,edr->ner", x, self.v[layer]))
            low = torch.tanh(torch.einsum("ner,ers->nes", low, self.c[layer]))
            experts = torch.einsum("ner,erd->ned", low, self.u[layer]) + self.bias[layer]  # (n, experts, size)
            weights = torch.softmax(gate(x), -1).unsqueeze(-1)
            x = (weights * (x0.unsqueeze(1) * experts)).sum(1) + x
        return x


class DcnV2Predictor(CrossAndDeep):
    def __init__(self, options: DcnV2Options, context) -> None:
        def cross(size: int) -> nn.Module:
            if options.rank is None:
                return FullRankCross(size, options.cross_layers)
            return LowRankMixtureCross(size, options.cross_layers, options.rank, options.experts)

        super().__init__(options, context, cross, stacked=options.structure == "stacked")
