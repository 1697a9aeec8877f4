"""The metric plugins (eval.metrics): each against a hand-computed case or scikit-learn, the default suite against
MIND's metrics, and the errors a recipe meets."""

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from once.errors import RecipeError
from once.measure import MetricSuite, history_groups, restricted
from once.metrics import mind_metrics
from once.protocols import ScoredSplit
from once.recipe import load_recipe

# 6 items (0 = padding): training clicks, one category field, 2-d vectors
CLICKS = np.array([0, 10, 5, 3, 1, 0])
CATEGORY = np.array([0, 1, 1, 2, 2, 3])
VECTORS = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [-1, 0], [1, 1]], dtype=np.float64)


def split(labels, scores, candidates, histories=None) -> ScoredSplit:
    return ScoredSplit(
        labels=[np.array(x) for x in labels],
        scores=[np.array(x, dtype=np.float64) for x in scores],
        candidates=[np.array(x) for x in candidates],
        histories=[np.array(x) for x in histories or [[] for _ in labels]],
        item_clicks=CLICKS,
        item_categories={"category": CATEGORY},
        item_vectors=VECTORS,
    )


# impression 0 ranks items 1, 3, 4, 2 (clicks: 2 and 4); impression 1 ranks 5, 1, 2 (click: 1)
SCORED = split(
    labels=[[0, 1, 0, 1], [1, 0, 0]],
    scores=[[0.9, 0.1, 0.5, 0.3], [0.4, 0.2, 0.8]],
    candidates=[[1, 2, 3, 4], [1, 2, 5]],
    histories=[[1, 3, 3], [5]],
)


def suite(registry, *metrics: str, k="[2]") -> MetricSuite:
    resolved = load_recipe("demo", registry, [f"eval.metrics=[{', '.join(metrics)}]", f"eval.k={k}"])
    return MetricSuite.build(resolved, ("category",))


def test_the_default_suite_is_minds_four_metrics(registry):
    rng = np.random.default_rng(0)
    labels, scores = [], []
    for _ in range(300):
        n = int(rng.integers(2, 12))
        labels.append((rng.random(n) < 0.3).astype(np.int64))
        scores.append(np.round(rng.normal(size=n), 1))  # ties
    data = ScoredSplit(labels, scores, [np.arange(len(x)) for x in labels], [], CLICKS, {})
    default = MetricSuite.build(load_recipe("demo", registry), ())
    assert default.columns == ["auc", "mrr", "ndcg@5", "ndcg@10"]
    result = default.summary(data)
    expected = mind_metrics(labels, scores)
    assert result == pytest.approx(expected, rel=1e-12)


def test_top_k_accuracy_by_hand(registry):
    result = suite(registry, "hit", "recall", "precision", k="[1, 2]").summary(SCORED)
    # impression 0: top 1 = item 1, top 2 = items 1, 3 (no click); impression 1: top 1 = item 5, top 2 = 5, 1
    assert result["hit@1"] == 0 and result["hit@2"] == pytest.approx(0.5)
    assert result["recall@2"] == pytest.approx((0 + 1) / 2)
    assert result["precision@2"] == pytest.approx((0 + 1 / 2) / 2)


def test_global_auc_pools_every_pair_as_sklearn_does(registry):
    labels = np.concatenate(SCORED.labels)
    scores = np.concatenate(SCORED.scores)
    result = suite(registry, "global_auc").summary(SCORED)
    assert result["global_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_diversity_novelty_popularity_and_tail_by_hand(registry):
    chosen = suite(registry, "ild", "{name: ild, by: category}", "novelty", "popularity", "tail")
    result = chosen.summary(SCORED)
    # top 2: impression 0 -> items 1, 3 (vectors at 90 degrees, categories 1 and 2); impression 1 -> 5, 1 (45
    # degrees, categories 3 and 1)
    assert result["ild_vectors@2"] == pytest.approx((1 + (1 - 1 / math.sqrt(2))) / 2)
    assert result["ild_category@2"] == pytest.approx(1.0)
    share = (CLICKS + 1) / (CLICKS.sum() + len(CLICKS))
    information = -np.log2(share)
    expected = ((information[1] + information[3]) / 2 + (information[5] + information[1]) / 2) / 2
    assert result["novelty@2"] == pytest.approx(expected)
    assert result["popularity@2"] == pytest.approx(((10 + 3) / 2 + (0 + 10) / 2) / 2)
    # the head holds 20% of the 19 clicks: item 1 alone (10 clicks); the rest is tail
    assert result["tail@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_coverage_gini_and_personalisation_by_hand(registry):
    result = suite(registry, "coverage", "gini", "personalisation").summary(SCORED)
    # catalogue: items 1-5; shown in a top 2: 1 (twice), 3, 5
    assert result["coverage@2"] == pytest.approx(3 / 5)
    counts = np.sort([2, 1, 1, 0, 0]).astype(float)
    j = np.arange(1, 6)
    assert result["gini@2"] == pytest.approx(((2 * j - 5 - 1) * counts).sum() / (5 * counts.sum()))
    # the two lists {1, 3} and {5, 1} share one item of two: cosine 1/2
    assert result["personalisation@2"] == pytest.approx(1 - 0.5)


def test_personalisation_equals_the_mean_over_every_pair_of_lists(registry):
    rng = np.random.default_rng(1)
    candidates = [rng.choice(np.arange(1, 6), size=int(rng.integers(1, 5)), replace=False) for _ in range(12)]
    data = split([[0] * len(c) for c in candidates], [rng.normal(size=len(c)) for c in candidates], candidates)
    result = suite(registry, "personalisation", k="[3]").summary(data)
    items, _, shown = data.top(np.arange(len(data)), 3)
    lists = [set(row[keep].tolist()) for row, keep in zip(items, shown, strict=True)]
    cosines = [len(a & b) / math.sqrt(len(a) * len(b)) for a, b in itertools.combinations(lists, 2)]
    assert result["personalisation@3"] == pytest.approx(1 - np.mean(cosines))


def test_calibration_is_steck_kl_by_hand(registry):
    result = suite(registry, "calibration").summary(SCORED)
    alpha = 0.01

    def kl(p, q):
        q = (1 - alpha) * q + alpha * p
        return sum(pi * math.log2(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)

    # impression 0: history categories 1, 2, 2; top 2 = items 1, 3 -> categories 1, 2
    first = kl(np.array([0, 1 / 3, 2 / 3, 0]), np.array([0, 1 / 2, 1 / 2, 0]))
    # impression 1: history category 3; top 2 = items 5, 1 -> categories 3 and 1
    second = kl(np.array([0, 0, 0, 1.0]), np.array([0, 1 / 2, 0, 1 / 2]))
    assert result["calibration@2"] == pytest.approx((first + second) / 2)


def test_item_groups_keep_only_their_candidates():
    view, rows = restricted(SCORED, CLICKS == 0)  # items never clicked: 5 only
    assert rows.tolist() == [1]
    assert view.candidates[1].tolist() == [5] and view.labels[1].tolist() == [0]


def test_history_groups_cover_every_impression_once():
    groups = history_groups(np.array([0, 3, 5, 6, 10, 11, 40]), [5, 10])
    assert {k: v.tolist() for k, v in groups.items()} == {
        "history <= 5": [0, 1, 2],
        "history 6-10": [3, 4],
        "history > 10": [5, 6],
    }


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ("[{name: ild, by: category, field: subcategory}]", "reads the item category 'subcategory'"),
        ("[ndcg, ndcg]", "both report 'ndcg@5'"),
    ],
)
def test_metrics_the_data_cannot_give_name_the_recipe_key(registry, metrics, message):
    resolved = load_recipe("demo", registry, [f"eval.metrics={metrics}"])
    with pytest.raises(RecipeError, match=message) as error:
        MetricSuite.build(resolved, ("category",))
    assert error.value.where == "eval.metrics"


def test_an_unknown_metric_is_named_with_the_closest(registry):
    with pytest.raises(RecipeError, match=r"eval.metrics\[1\]: unknown metric 'ndgc'") as error:
        load_recipe("demo", registry, ["eval.metrics=[auc, ndgc]"])
    assert "ndcg" in error.value.hint
