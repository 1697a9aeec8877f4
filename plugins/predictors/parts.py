"""The click predictors of this package: their recipe options and where each lives.

`dot` scores by the inner product (the matching models'). The CTR predictors (dnn, dcn, dcnv2, gdcn, deepfm, pnn,
autoint, finalmlp, masknet, din) cross "fields": the user vector, the candidate's vector and the side fields a
recipe adds with `fields` (the user's id, the candidate's popularity and category fields). They train under
either task; `train.task: ranking` is how their papers train them.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from once.api import Options, hookimpl


class DotOptions(Options):
    """No options."""


class FieldOptions(Options):
    fields: list[str] = Field(
        default_factory=list,
        description="side fields beside the user and candidate vectors: 'user' (a user-id embedding), "
        "'popularity' (the candidate's log2 training clicks, bucketed) or an item category field (items.categories)",
    )
    field_dim: int | None = Field(
        None, ge=1, description="size of every field; default the item vector's (user and item vectors are projected)"
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="after each hidden layer")


class MlpOptions(FieldOptions):
    hidden: list[int] = Field(default_factory=lambda: [400, 400, 400], description="the deep network's layers")


class DcnOptions(MlpOptions):
    cross_layers: int = Field(3, ge=1, description="cross layers")


class DcnV2Options(DcnOptions):
    structure: Literal["parallel", "stacked"] = Field(
        "parallel", description="cross and deep side by side, or the deep network on the cross network's output"
    )
    rank: int | None = Field(None, ge=1, description="low-rank cross weights (mixture of experts); None: full rank")
    experts: int = Field(4, ge=1, description="low-rank experts per cross layer (with rank)")


class GdcnOptions(DcnOptions):
    structure: Literal["parallel", "stacked"] = Field(
        "parallel", description="GDCN-P (gated cross and deep side by side) or GDCN-S (deep on the gated cross)"
    )


class PnnOptions(MlpOptions):
    product: Literal["inner", "outer"] = Field("inner", description="IPNN or OPNN (outer: superposed, d x d)")


class AutoIntOptions(FieldOptions):
    layers: int = Field(3, ge=1, description="interacting (multi-head self-attention) layers")
    heads: int = Field(2, ge=1)
    attention_dim: int = Field(32, ge=1, description="size of each head")
    residual: bool = True
    hidden: list[int] = Field(default_factory=list, description="AutoInt+: a deep network beside (empty: AutoInt)")


class FinalMlpOptions(FieldOptions):
    mlp1: list[int] = Field(default_factory=lambda: [400, 400, 400], description="the first stream's layers")
    mlp2: list[int] = Field(default_factory=lambda: [400, 400], description="the second stream's layers")
    selection_hidden: list[int] = Field(default_factory=lambda: [64], description="each feature gate's layers")
    heads: int = Field(1, ge=1, description="bilinear fusion heads (must divide both streams' output sizes)")


class MaskNetOptions(FieldOptions):
    structure: Literal["serial", "parallel"] = "parallel"
    blocks: int = Field(3, ge=1, description="MaskBlocks")
    block_dim: int = Field(200, ge=1, description="each MaskBlock's output size")
    reduction_ratio: float = Field(2.0, gt=0, description="mask aggregation layer size over its input size")
    hidden: list[int] = Field(default_factory=lambda: [400], description="the parallel structure's deep network")


class DinOptions(FieldOptions):
    attention_hidden: list[int] = Field(default_factory=lambda: [80, 40], description="the activation unit's layers")
    hidden: list[int] = Field(default_factory=lambda: [200, 80], description="the deep network's layers")
    activation: Literal["dice", "prelu"] = Field("dice", description="Dice (the paper's) or PReLU")


@hookimpl
def register_predictors(register):
    package = "once_plugins.predictors"
    register("dot", f"{package}.dot:DotPredictor", DotOptions)
    register("dnn", f"{package}.dnn:DnnPredictor", MlpOptions)
    register("dcn", f"{package}.dcn:DcnPredictor", DcnOptions)
    register("dcnv2", f"{package}.dcnv2:DcnV2Predictor", DcnV2Options)
    register("gdcn", f"{package}.gdcn:GdcnPredictor", GdcnOptions)
    register("deepfm", f"{package}.deepfm:DeepFmPredictor", MlpOptions)
    register("pnn", f"{package}.pnn:PnnPredictor", PnnOptions)
    register("autoint", f"{package}.autoint:AutoIntPredictor", AutoIntOptions)
    register("finalmlp", f"{package}.finalmlp:FinalMlpPredictor", FinalMlpOptions)
    register("masknet", f"{package}.masknet:MaskNetPredictor", MaskNetOptions)
    register("din", f"{package}.din:DinPredictor", DinOptions)
