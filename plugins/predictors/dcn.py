"""DCN, Deep & Cross Network (Wang, Fu, Fu and Wang, ADKDD 2017).

The cross network crosses the stacked fields x0 explicitly, one degree per layer:
x_{l+1} = x0 (x_l . w_l) + b_l + x_l; a deep network runs beside it on x0, and a linear layer over both outputs
gives the logit, as the paper's combination layer does.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.predictors.crossing import CrossAndDeep
from once_plugins.predictors.parts import DcnOptions


class CrossNetwork(nn.Module):
    """The paper's cross layers: a weight vector and a bias per layer."""

    def __init__(self, size: int, layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.randn(layers, size) * size**-0.5)
        self.biases = nn.Parameter(torch.zeros(layers, size))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for weight, bias in zip(self.weights, self.biases, strict=True):
            x = x0 * (x @ weight).unsqueeze(-1) + bias + x
        return x


class DcnPredictor(CrossAndDeep):
    def __init__(self, options: DcnOptions, context) -> None:
        super().__init__(options, context, lambda size: CrossNetwork(size, options.cross_layers))
