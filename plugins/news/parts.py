"""The news models of this package (NRMS, NAML, LSTUR, TANR, Fastformer, MINER, CAUM, NPA, DKN, NRMS-DocVec): their
recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from once.api import Options, hookimpl


class NrmsItemOptions(Options):
    field: str = Field("title", description="the tokenized text field to encode")
    word_dim: int = Field(300, ge=1, description="word embedding size (must match tokenizer.vectors if given)")
    heads: int = Field(16, ge=1)
    head_dim: int = Field(16, ge=1)
    query_dim: int = Field(200, ge=1, description="additive attention query size")
    dropout: float = Field(0.2, ge=0, lt=1)


class NrmsUserOptions(Options):
    heads: int = Field(16, ge=1)
    head_dim: int | None = Field(
        None, ge=1, description="default: the item vector's size / heads, so user and item vectors match"
    )
    query_dim: int = Field(200, ge=1)


class NamlItemOptions(Options):
    views: list[str] = Field(
        default_factory=lambda: ["title", "abstract", "category", "subcategory"],
        description="text or category fields; those the data lacks are skipped",
    )
    word_dim: int = Field(300, ge=1)
    filters: int = Field(400, ge=1, description="CNN filters = item vector size")
    window: int = Field(3, ge=1)
    query_dim: int = Field(200, ge=1)
    category_dim: int = Field(100, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class NamlUserOptions(Options):
    query_dim: int = Field(200, ge=1)


class LsturItemOptions(Options):
    field: str = "title"
    categories: list[str] = Field(default_factory=lambda: ["category", "subcategory"])
    word_dim: int = Field(300, ge=1)
    filters: int = Field(300, ge=1)
    window: int = Field(3, ge=1)
    query_dim: int = Field(200, ge=1)
    category_dim: int = Field(100, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class LsturUserOptions(Options):
    variant: Literal["ini", "con"] = "ini"
    mask_probability: float = Field(0.5, ge=0, le=1, description="chance to drop the user embedding in training")
    user_dim: int | None = Field(None, ge=1, description="con only: long-term part (default half the item size)")


class TanrItemOptions(Options):
    field: str = Field("title", description="the tokenized text field to encode")
    topic: str = Field("category", description="the category field the auxiliary loss predicts")
    word_dim: int = Field(300, ge=1)
    filters: int = Field(400, ge=1, description="CNN filters = item vector size")
    window: int = Field(3, ge=1)
    query_dim: int = Field(200, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    topic_weight: float = Field(0.2, ge=0, description="weight of the topic-classification loss (the paper's lambda)")


class TanrUserOptions(Options):
    query_dim: int = Field(200, ge=1)


class FastformerItemOptions(Options):
    field: str = Field("title", description="the tokenized text field to encode")
    word_dim: int = Field(300, ge=1)
    dim: int = Field(256, ge=1, description="hidden size = item vector size")
    heads: int = Field(16, ge=1, description="attention heads (must divide dim)")
    layers: int = Field(1, ge=1, description="Fastformer layers")
    query_dim: int = Field(200, ge=1, description="additive attention query size of the pooling")
    dropout: float = Field(0.2, ge=0, lt=1)


class FastformerUserOptions(Options):
    heads: int = Field(16, ge=1, description="attention heads (must divide the item vector size)")
    layers: int = Field(1, ge=1)
    query_dim: int = Field(200, ge=1)


class MinerUserOptions(Options):
    interests: int = Field(32, ge=1, description="K: context codes, one interest vector each")
    code_dim: int = Field(200, ge=1, description="size of a context code")
    disagreement_weight: float = Field(0.8, ge=0, description="weight of the interests' mean cosine similarity")


class MinerPredictorOptions(Options):
    aggregation: Literal["max", "mean", "weighted"] = Field(
        "weighted", description="how the K matching scores combine; weighted: target-aware attention"
    )


class CaumUserOptions(Options):
    heads: int | None = Field(
        None, ge=1, description="self-attention heads; default: 20 (the authors'), or fewer that divide the item size"
    )
    attention_dim: int = Field(256, ge=1, description="second hidden layer of the candidate-aware attention")
    dropout: float = Field(0.2, ge=0, lt=1)


class NpaItemOptions(Options):
    field: str = Field("title", description="the tokenized text field to encode")
    word_dim: int = Field(300, ge=1)
    filters: int = Field(400, ge=1, description="CNN filters = item vector size")
    window: int = Field(3, ge=1)
    user_dim: int = Field(50, ge=1, description="user-ID embedding size")
    query_dim: int = Field(200, ge=1, description="size of the personalized word query")
    dropout: float = Field(0.2, ge=0, lt=1)


class NpaUserOptions(Options):
    user_dim: int = Field(50, ge=1, description="user-ID embedding size")
    query_dim: int = Field(200, ge=1, description="size of the personalized news query")


class DknItemOptions(Options):
    field: str = Field("title", description="the tokenized text field; its entities come from items.entities")
    entities: bool = Field(True, description="read the field's linked entities; false: words only (an ablation)")
    word_dim: int = Field(100, ge=1, description="word embedding size (must match tokenizer.vectors if given)")
    entity_dim: int = Field(100, ge=1, description="entity embedding size when the dataset has no entity vectors")
    tune_entities: bool = Field(False, description="also train the dataset's pretrained entity vectors")
    windows: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], min_length=1, description="CNN window sizes")
    filters: int = Field(100, ge=1, description="filters per window; the item vector has filters x windows")
    dropout: float = Field(0.0, ge=0, lt=1, description="on the item vector")


class DocVecItemOptions(Options):
    field: str = Field("contrastive", description="the item vector field to encode (recipe items.vectors)")
    units: list[int] = Field(
        default_factory=lambda: [512, 512, 512], description="hidden dense layers (ReLU, batch norm, dropout)"
    )
    dim: int = Field(256, ge=1, description="item vector size (the reference: heads x head_dim of NRMS, 16 x 16)")
    dropout: float = Field(0.2, ge=0, lt=1)


class DknUserOptions(Options):
    attention_dim: int = Field(100, ge=1, description="hidden layer of the attention network over [click; candidate]")


class DknPredictorOptions(Options):
    hidden: list[int] = Field(default_factory=lambda: [100], description="hidden layers of the click network G")


@hookimpl
def register_item_encoders(register):
    register("nrms", "once_plugins.news.nrms:NrmsItemEncoder", NrmsItemOptions)
    register("naml", "once_plugins.news.naml:NamlItemEncoder", NamlItemOptions)
    register("lstur", "once_plugins.news.lstur:LsturItemEncoder", LsturItemOptions)
    register("tanr", "once_plugins.news.tanr:TanrItemEncoder", TanrItemOptions)
    register("fastformer", "once_plugins.news.fastformer:FastformerItemEncoder", FastformerItemOptions)
    register("npa", "once_plugins.news.npa:NpaItemEncoder", NpaItemOptions)
    register("dkn", "once_plugins.news.dkn:DknItemEncoder", DknItemOptions)
    register("docvec", "once_plugins.news.docvec:DocVecItemEncoder", DocVecItemOptions)


@hookimpl
def register_user_encoders(register):
    register("nrms", "once_plugins.news.nrms:NrmsUserEncoder", NrmsUserOptions)
    register("naml", "once_plugins.users.attention:AttentionUserEncoder", NamlUserOptions)
    register("lstur", "once_plugins.news.lstur:LsturUserEncoder", LsturUserOptions)
    register("tanr", "once_plugins.users.attention:AttentionUserEncoder", TanrUserOptions)
    register("fastformer", "once_plugins.news.fastformer:FastformerUserEncoder", FastformerUserOptions)
    register("miner", "once_plugins.news.miner:MinerUserEncoder", MinerUserOptions)
    register("caum", "once_plugins.news.caum:CaumUserEncoder", CaumUserOptions)
    register("npa", "once_plugins.news.npa:NpaUserEncoder", NpaUserOptions)
    register("dkn", "once_plugins.news.dkn:DknUserEncoder", DknUserOptions)


@hookimpl
def register_predictors(register):
    register("miner", "once_plugins.news.miner:MinerPredictor", MinerPredictorOptions)
    register("dkn", "once_plugins.news.dkn:DknPredictor", DknPredictorOptions)
