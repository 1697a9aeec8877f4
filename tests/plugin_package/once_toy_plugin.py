"""A third-party ONCE plugin: the user vector is the mean of the clicked items' vectors, then a linear map."""

import torch
from torch import nn

from once.api import BuildContext, Options, Register, hookimpl


class MeanOptions(Options):
    bias: bool = True


class MeanUserEncoder(nn.Module):
    def __init__(self, options: MeanOptions, context: BuildContext) -> None:
        super().__init__()
        self.project = nn.Linear(context.item_dim, context.item_dim, bias=options.bias)
        self.dim = context.item_dim

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        weights = mask.float() / mask.sum(-1, keepdim=True).clamp(min=1)
        return self.project(torch.einsum("bl,bld->bd", weights, history))


@hookimpl
def register_user_encoders(register: Register) -> None:
    register("average", MeanUserEncoder, MeanOptions)
