"""GDCN, the Gated Deep Cross Network (Wang, Lin, Zhao, Chen and Zhou, CIKM 2023, "Towards Deeper, Lighter and
Interpretable Cross Network for CTR Prediction").

Each gated cross layer keeps the cross it builds only as far as an information gate lets it:
c_{l+1} = c0 * (W_c c_l + b_c) * sigmoid(W_g c_l) + c_l. GDCN-P runs the deep network beside the gated cross
network, GDCN-S on its output; a linear layer gives the logit.

Deviation: the paper's field-level dimension optimisation (a smaller embedding size per field, chosen from the
trained embeddings' principal components) is left out; every field has the same size here.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.predictors.crossing import CrossAndDeep
from once_plugins.predictors.parts import GdcnOptions


class GatedCross(nn.Module):
    def __init__(self, size: int, layers: int) -> None:
        super().__init__()
        self.crosses = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))
        self.gates = nn.ModuleList(nn.Linear(size, size, bias=False) for _ in range(layers))

    def forward(self, c0: torch.Tensor) -> torch.Tensor:
        c = c0
        for cross, gate in zip(self.crosses, self.gates, strict=True):
            c = c0 * cross(c) * torch.sigmoid(gate(c)) + c
        return c


class GdcnPredictor(CrossAndDeep):
    def __init__(self, options: GdcnOptions, context) -> None:
        stacked = options.structure == "stacked"
        super().__init__(options, context, lambda size: GatedCross(size, options.cross_layers), stacked)
