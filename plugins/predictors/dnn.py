"""DNN: a multilayer perceptron over the concatenated fields, the deep half every deep CTR model shares (the "DNN"
baseline of Guo et al. 2017 and Wang et al. 2017)."""

from __future__ import annotations

import torch

from once_plugins.predictors.fields import FieldPredictor, mlp
from once_plugins.predictors.parts import MlpOptions


class DnnPredictor(FieldPredictor):
    def __init__(self, options: MlpOptions, context) -> None:
        super().__init__(options, context)
        self.network = mlp(self.fields.count * self.fields.dim, options.hidden, options.dropout)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        return self.network(fields.flatten(1)).squeeze(-1)
