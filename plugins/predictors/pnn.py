"""PNN, the Product-based Neural Network (Qu, Cai, Ren, Zhang, Yu, Wen and Wang, ICDM 2016).

The product layer feeds the deep network the fields themselves (the linear signal z) with their products p:
IPNN the inner product of every pair of fields (a field with itself included, as the paper's p_ij over
i, j = 1..N; symmetric, so each pair once), OPNN the outer product of the fields' sum with itself (the
paper's superposition, d x d values). The paper's first hidden layer l1 = relu(W_z z + W_p p + b) is a linear
layer over [z; p], which is how it is built here; the deep network's further layers follow.
"""

from __future__ import annotations

import torch

from once_plugins.predictors.fields import FieldPredictor, mlp
from once_plugins.predictors.parts import PnnOptions


class PnnPredictor(FieldPredictor):
    def __init__(self, options: PnnOptions, context) -> None:
        super().__init__(options, context)
        count, dim = self.fields.count, self.fields.dim
        self.outer = options.product == "outer"
        products = dim * dim if self.outer else count * (count + 1) // 2
        rows, columns = torch.triu_indices(count, count)  # every p_ij with i <= j
        self.register_buffer("left", rows, persistent=False)
        self.register_buffer("right", columns, persistent=False)
        self.deep = mlp(count * dim + products, options.hidden, options.dropout)

    def products(self, fields: torch.Tensor) -> torch.Tensor:
        """(n, fields, dim) -> (n, products)."""
        if self.outer:
            total = fields.sum(1)
            return (total.unsqueeze(2) * total.unsqueeze(1)).flatten(1)
        return (fields[:, self.left] * fields[:, self.right]).sum(-1)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        return self.deep(torch.cat([fields.flatten(1), self.products(fields)], -1)).squeeze(-1)
