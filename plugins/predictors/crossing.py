"""What DCN, DCN-V2 and GDCN share: a cross network and a deep network over the flattened fields x0, side by side
(parallel: a linear layer over both outputs) or the deep network on the cross network's output (stacked)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from once_plugins.predictors.fields import FieldPredictor, mlp, mlp_output
from once_plugins.predictors.parts import DcnOptions


class CrossAndDeep(FieldPredictor):
    def __init__(self, options: DcnOptions, context, cross: Callable[[int], nn.Module], stacked: bool = False) -> None:
        super().__init__(options, context)
        size = self.fields.count * self.fields.dim
        self.cross = cross(size)
        self.stacked = stacked
        self.deep = mlp(size, options.hidden, options.dropout, out=None)
        deep = mlp_output(size, options.hidden)
        self.combine = nn.Linear(deep if stacked else size + deep, 1)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        x0 = fields.flatten(1)
        crossed = self.cross(x0)
        out = self.deep(crossed) if self.stacked else torch.cat([crossed, self.deep(x0)], -1)
        return self.combine(out).squeeze(-1)
