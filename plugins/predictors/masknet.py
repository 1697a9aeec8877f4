"""MaskNet (Wang, She and Zhang, DLP-KDD 2021): feature-wise multiplication by instance-guided masks.

The instance-guided mask is computed from the instance's flattened fields V_emb by two linear layers
(aggregation, `reduction_ratio` x wider than the output, then projection). A MaskBlock multiplies its input by
a mask, then LayerNorm(linear) and ReLU give its `block_dim` output. The first block's input is the layer-
normalised fields (LN-EMB); the serial structure feeds each later block the previous block's output, the parallel
one runs every block on the fields and a deep network over their concatenated outputs; a linear layer gives the
logit.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.predictors.fields import FieldPredictor, mlp
from once_plugins.predictors.parts import MaskNetOptions


class MaskBlock(nn.Module):
    def __init__(self, fields_size: int, inputs: int, outputs: int, reduction_ratio: float) -> None:
        super().__init__()
        aggregation = max(1, round(reduction_ratio * inputs))
        self.mask = nn.Sequential(nn.Linear(fields_size, aggregation), nn.ReLU(), nn.Linear(aggregation, inputs))
        self.hidden = nn.Sequential(nn.Linear(inputs, outputs, bias=False), nn.LayerNorm(outputs), nn.ReLU())

    def forward(self, fields: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.hidden(inputs * self.mask(fields))


class MaskNetPredictor(FieldPredictor):
    def __init__(self, options: MaskNetOptions, context) -> None:
        super().__init__(options, context)
        size, out = self.fields.count * self.fields.dim, options.block_dim
        self.embedding_norm = nn.LayerNorm(self.fields.dim)
        self.serial = options.structure == "serial"
        ratio = options.reduction_ratio
        self.blocks = nn.ModuleList(
            MaskBlock(size, out if self.serial and i else size, out, ratio) for i in range(options.blocks)
        )
        if self.serial:
            self.output = nn.Linear(out, 1)
        else:
            self.output = mlp(out * options.blocks, options.hidden, options.dropout)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        flat = fields.flatten(1)
        normalised = self.embedding_norm(fields).flatten(1)
        if self.serial:
            hidden = normalised
            for block in self.blocks:
                hidden = block(flat, hidden)
            return self.output(hidden).squeeze(-1)
        return self.output(torch.cat([block(flat, normalised) for block in self.blocks], -1)).squeeze(-1)
