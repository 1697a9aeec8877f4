"""The dataset readers of this package (MIND, xMIND, EB-NeRD, PENS, Adressa, any interaction log with an item
table, the demo corpus): their recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from once.api import Options, RecipePath, hookimpl

SIZES = {  # presets of the demo's `size`; explicit options win over them
    "demo": {},
    # MIND-small's shape: 65,238 news, 50,000 users, about 37 candidates per impression; 3 training impressions
    # per user plus one dev and one test impression give 250,000 impressions (MIND-small has 230,117)
    "mind-small": {"items": 65_238, "users": 50_000, "impressions": 3, "candidates": 37},
}


class MindOptions(Options):
    path: RecipePath
    unknown_items: Literal["error", "skip"] = "error"


class XmindOptions(Options):
    path: RecipePath = Field(description="the MIND folder (behaviours, categories, entities), as for `mind`")
    news: RecipePath = Field(description="one language's xMIND folder (xMINDsmall_train/news.tsv, ...), e.g. xMIND/swh")
    keep_english: bool = Field(False, description="keep MIND's English texts as title_en and abstract_en")
    untranslated: Literal["error", "english"] = Field(
        "error", description="MIND news the translation lacks: refuse, or keep their English texts"
    )
    unknown_items: Literal["error", "skip"] = "error"


class EbnerdOptions(Options):
    path: RecipePath = Field(description="the ebnerd_demo/small/large folder: articles.parquet, train/, validation/")
    test: RecipePath | None = Field(None, description="the ebnerd_testset folder (its test/ split, unlabeled)")
    embeddings: dict[str, RecipePath] = Field(
        default_factory=dict,
        description="vector field -> a document-embedding file (article_id and one column of vectors), e.g. "
        "contrastive: <path>/artifacts/Ekstra_Bladet_contrastive_vector/contrastive_vector.parquet",
    )
    unknown_items: Literal["error", "skip"] = "error"


class PensOptions(Options):
    path: RecipePath = Field(description="the PENS folder: news.tsv, train.tsv, valid.tsv, personalized_test.tsv")
    unknown_items: Literal["error", "skip"] = "error"


class AdressaOptions(Options):
    path: RecipePath = Field(description="the unpacked one_week/ or three_month/ folder of daily files (.gz or not)")
    train_day: int = Field(6, ge=1, description="first day whose clicks are training impressions (earlier: history)")
    test_day: int = Field(7, ge=2, description="first day whose clicks are dev/test impressions")
    dev_share: float = Field(0.2, gt=0, lt=1, description="share of the test days' impressions drawn for dev")
    negatives: int = Field(20, ge=1, description="unclicked candidates per impression (every split)")
    negative_pool: Literal["catalogue", "live"] = Field(
        "catalogue", description="draw them from every article, or from those live (published or read) before the click"
    )
    live_hours: float = Field(24, gt=0, description="negative_pool live: how far back an article counts as live")
    min_history: int = Field(1, ge=0, description="impressions with a shorter history are left out")
    max_history: int | None = Field(None, ge=1, description="keep only the latest clicks of each history")
    require_metadata: bool = Field(
        True, description="clicks need a title and an article seen with a title and category1; false: keep every id"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _days_in_order(self) -> AdressaOptions:
        if self.test_day <= self.train_day:
            raise ValueError(f"test_day ({self.test_day}) must come after train_day ({self.train_day})")
        return self


class LogColumns(Options):
    user: str = Field("user_id", description="the user id column")
    item: str = Field("item_id", description="the item id column")
    time: str | None = Field(None, description="the time column (numbers, timestamps, or text read by time_format)")
    rating: str | None = Field(None, description="a rating column: rows at or above min_rating are clicks")
    label: str | None = Field(None, description="a click label column (1 clicked, 0 shown and not clicked)")


class ItemColumns(Options):
    id: str = Field("item_id", description="the item id column of the item table")
    text: list[str] = Field(default_factory=lambda: ["title"], description="text columns (become items.text fields)")
    categories: list[str] = Field(default_factory=list, description="category columns")


class InteractionsOptions(Options):
    log: RecipePath = Field(description="the interaction log: .csv, .tsv, .jsonl (JSON lines) or .parquet; .gz too")
    items: RecipePath = Field(description="the item table, in any of the same formats")
    columns: LogColumns = LogColumns()
    item_columns: ItemColumns = ItemColumns()
    time_format: str | None = Field(None, description="strptime format of a text time column")
    min_rating: float | None = Field(None, description="with columns.rating: the lowest rating that is a click")
    k_core: int = Field(0, ge=0, description="keep users and items with at least this many clicks (repeated)")
    split: Literal["leave-last-out", "temporal"] = Field(
        "leave-last-out", description="each user's last click tests, the one before it validates; or cut by time"
    )
    dev_share: float = Field(0.1, gt=0, lt=0.5, description="temporal: the share of clicks after the dev cut")
    test_share: float = Field(0.1, gt=0, lt=0.5, description="temporal: the share of clicks after the test cut")
    negatives: Literal["uniform", "popularity", "logged"] = Field(
        "popularity",
        description="unclicked candidates drawn uniformly, by clicks + 1, or from the user's logged non-clicks",
    )
    train_negatives: int = Field(4, ge=1, description="unclicked candidates per training impression")
    eval_negatives: int = Field(99, ge=0, description="unclicked candidates per dev/test impression; 0: every item")
    max_history: int = Field(100, ge=1, description="most recent clicks kept as an impression's history")
    unknown_items: Literal["error", "skip"] = "error"
    seed: int = 0


class DemoOptions(Options):
    size: Literal["demo", "mind-small"] = Field("demo", description="preset sizes; the options below override it")
    items: int = Field(3000, ge=20)
    users: int = Field(1000, ge=10)
    impressions: int = Field(4, ge=1, description="training impressions per user (dev and test get one each)")
    candidates: int = Field(15, ge=2)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _apply_size(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return {**SIZES.get(values.get("size", "demo"), {}), **values}
        return values


@hookimpl
def register_datasets(register):
    register("mind", "once_plugins.datasets.mind:MindDataset", MindOptions)
    register("xmind", "once_plugins.datasets.xmind:XmindDataset", XmindOptions)
    register("ebnerd", "once_plugins.datasets.ebnerd:EbnerdDataset", EbnerdOptions)
    register("pens", "once_plugins.datasets.pens:PensDataset", PensOptions)
    register("demo", "once_plugins.datasets.demo:DemoDataset", DemoOptions)
    register("interactions", "once_plugins.datasets.interactions:InteractionsDataset", InteractionsOptions)
    register("adressa", "once_plugins.datasets.adressa:AdressaDataset", AdressaOptions)
