"""The evaluation metrics of this package: accuracy (MIND's AUC, MRR, nDCG@k; HR, recall and precision@k; global
AUC and logloss) and beyond accuracy (diversity, coverage, exposure Gini, novelty, popularity, long tail,
personalisation, calibration). A recipe lists them in `eval.metrics`; `eval.k` gives the top-k cut-offs.
docs/metrics.md has each formula and the source it follows.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it.
"""

from __future__ import annotations

from pydantic import Field

from once.api import Options, hookimpl


class NoOptions(Options):
    """The metric has no options (its cut-offs come from eval.k)."""


class CategoryOptions(Options):
    field: str = Field("category", description="the item category field (items.categories) the metric reads")


class DiversityOptions(Options):
    by: str = Field("vectors", pattern="^(vectors|category)$", description="item vectors (cosine) or a category")
    field: str = Field("category", description="the category field when by: category")


class TailOptions(Options):
    head_clicks: float = Field(
        0.2, gt=0, lt=1, description="the head: the most-clicked items that hold this share of training clicks"
    )


class CalibrationOptions(CategoryOptions):
    alpha: float = Field(0.01, gt=0, lt=1, description="mixes the history's distribution into the list's (Steck)")


@hookimpl
def register_metrics(register):
    accuracy = "once_plugins.metrics.accuracy"
    register("auc", f"{accuracy}:ImpressionAuc", NoOptions)
    register("mrr", f"{accuracy}:ReciprocalRank", NoOptions)
    register("ndcg", f"{accuracy}:Ndcg", NoOptions)
    register("hit", f"{accuracy}:HitRate", NoOptions)
    register("recall", f"{accuracy}:Recall", NoOptions)
    register("precision", f"{accuracy}:Precision", NoOptions)
    register("global_auc", f"{accuracy}:GlobalAuc", NoOptions)
    register("logloss", f"{accuracy}:LogLoss", NoOptions)
    beyond = "once_plugins.metrics.beyond"
    register("ild", f"{beyond}:IntraListDiversity", DiversityOptions)
    register("novelty", f"{beyond}:Novelty", NoOptions)
    register("popularity", f"{beyond}:AveragePopularity", NoOptions)
    register("tail", f"{beyond}:TailShare", TailOptions)
    register("coverage", f"{beyond}:Coverage", NoOptions)
    register("gini", f"{beyond}:ExposureGini", NoOptions)
    register("personalisation", f"{beyond}:Personalisation", NoOptions)
    register("calibration", f"{beyond}:Calibration", CalibrationOptions)
