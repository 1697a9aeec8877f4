"""NRMS-DocVec's item encoder (Kruse et al., "EB-NeRD: A Large-Scale Dataset for News Recommendation", RecSys
Challenge 2024; ebanalyse/ebnerd-benchmark, `NRMSDocVec`): a pre-computed document embedding through dense layers.

Item: vector -> [dense -> ReLU -> batch norm -> dropout] per hidden layer (512, 512, 512) -> dense -> ReLU.
Pair it with the NRMS user encoder, as the benchmark does. Deviation: the reference puts an L2 penalty of 1e-4 on
the hidden kernels alone; here `train.weight_decay` is the one regulariser and covers every parameter.
"""

from __future__ import annotations

import torch
from torch import nn

from once.api import Dropout
from once_plugins.news.parts import DocVecItemOptions


class DocVecItemEncoder(nn.Module):
    def __init__(self, options: DocVecItemOptions, context) -> None:
        super().__init__()
        self.field = options.field
        width = context.require_vectors(options.field)
        layers: list[nn.Module] = []
        for units in options.units:
            norm = nn.BatchNorm1d(units, eps=1e-3, momentum=0.01)  # Keras's defaults, which the reference runs on
            layers += [nn.Linear(width, units), nn.ReLU(), norm, Dropout(options.dropout)]
            width = units
        layers += [nn.Linear(width, options.dim), nn.ReLU()]
        self.network = nn.Sequential(*layers)
        self.dim = options.dim

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.network(features[self.field])  # (items, vector dim) -> (items, dim)
