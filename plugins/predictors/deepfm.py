"""DeepFM (Guo, Tang, Ye, Li and He, IJCAI 2017): a factorization machine and a deep network sharing the fields.

logit = b + sum_f w_f . x_f  +  sum_{f < g} <x_f, x_g>  +  DNN([x_1; ...; x_F]). The FM's second-order term is
computed as 0.5 * sum_d ((sum_f x_f)^2 - sum_f x_f^2), in time linear in the fields.

Deviation: the paper's first-order term is a scalar weight per feature value; with fields that are dense vectors
(the user's and the candidate's) it is a linear map of each field (w_f . x_f), which for an id field's learned
embedding spans the same scalars.
"""

from __future__ import annotations

import torch
from torch import nn

from once_plugins.predictors.fields import FieldPredictor, mlp
from once_plugins.predictors.parts import MlpOptions


def factorization_machine(fields: torch.Tensor) -> torch.Tensor:
    """(n, fields, dim) -> (n,): the sum of the inner products of every pair of fields."""
    return 0.5 * (fields.sum(1).pow(2) - fields.pow(2).sum(1)).sum(-1)


class DeepFmPredictor(FieldPredictor):
    def __init__(self, options: MlpOptions, context) -> None:
        super().__init__(options, context)
        count, dim = self.fields.count, self.fields.dim
        self.first_order = nn.Parameter(torch.zeros(count, dim))
        self.bias = nn.Parameter(torch.zeros(()))
        self.deep = mlp(count * dim, options.hidden, options.dropout)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        linear = (fields * self.first_order).sum((1, 2)) + self.bias
        return linear + factorization_machine(fields) + self.deep(fields.flatten(1)).squeeze(-1)
