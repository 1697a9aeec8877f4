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


class BilinearOptions(Options):
    pass


class BilinearPredictor(nn.Module):
    """score = user^T W candidate + b: a calibrated click probability through sigmoid, so it trains by ranking only."""

    tasks = ("ranking",)

    def __init__(self, options: BilinearOptions, context: BuildContext) -> None:
        super().__init__()
        self.bilinear = nn.Bilinear(context.user_dim, context.item_dim, 1)

    def forward(self, users: torch.Tensor, candidates: torch.Tensor, pairs) -> torch.Tensor:
        users = users.unsqueeze(1).expand(-1, candidates.shape[1], -1).contiguous()
        return self.bilinear(users, candidates.contiguous()).squeeze(-1)


@hookimpl
def register_predictors(register: Register) -> None:
    register("bilinear", BilinearPredictor, BilinearOptions)
