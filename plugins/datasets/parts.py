"""The dataset readers of this package (MIND, the demo corpus): their recipe options and where each lives.

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


class EbnerdOptions(Options):
    path: RecipePath = Field(description="the ebnerd_demo/small/large folder: articles.parquet, train/, validation/")
    test: RecipePath | None = Field(None, description="the ebnerd_testset folder (its test/ split, unlabeled)")
    unknown_items: Literal["error", "skip"] = "error"


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
    register("ebnerd", "once_plugins.datasets.ebnerd:EbnerdDataset", EbnerdOptions)
    register("demo", "once_plugins.datasets.demo:DemoDataset", DemoOptions)
