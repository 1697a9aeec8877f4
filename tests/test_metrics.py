import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from once.metrics import auc, impression_metrics, mind_metrics, mrr, ndcg


def test_hand_computed_impression():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.4, 0.3, 0.2, 0.1])  # ranked: neg, pos, neg, pos
    assert auc(labels, scores) == pytest.approx(0.25)  # 1 of 4 (pos, neg) pairs ordered right
    assert mrr(labels, scores) == pytest.approx((1 / 2 + 1 / 4) / 2)  # over both clicks, not first hit only
    ideal = 1 + 1 / math.log2(3)
    assert ndcg(labels, scores, 5) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert ndcg(labels, scores, 1) == 0.0


def test_perfect_ranking_scores_one():
    metrics = impression_metrics(np.array([1, 0, 0]), np.array([0.9, 0.5, 0.1]))
    assert metrics == {"auc": 1.0, "mrr": 1.0, "ndcg@5": 1.0, "ndcg@10": 1.0}


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 30))
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            labels[0] = 1 - labels[0]
        scores = np.round(rng.normal(size=n), 1)  # rounding makes ties
        assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_mean_over_impressions_skips_auc_where_labels_are_equal():
    labels = [np.array([1, 0]), np.array([1, 1]), np.array([0, 1, 0])]
    scores = [np.array([0.2, 0.1]), np.array([0.5, 0.4]), np.array([0.9, 0.1, 0.5])]
    result = mind_metrics(labels, scores)
    assert result["auc"] == pytest.approx((1.0 + 0.0) / 2)  # the all-clicked impression has no AUC
    assert result["mrr"] == pytest.approx((1.0 + (1 + 1 / 2) / 2 + 1 / 3) / 3)


def test_impressions_scored_as_matrices_equal_one_by_one_to_the_bit():
    """mind_metrics scores impressions of one width together; the averages equal those of impression_metrics
    taken one impression at a time, ties, every-candidate-clicked and no-click impressions included."""
    rng = np.random.default_rng(0)
    labels, scores = [], []
    for _ in range(3000):
        width = int(rng.choice([1, 2, 5, 20, 37, 129]))  # 129: wider than the matrix path, one by one
        labels.append((rng.random(width) < rng.choice([0.0, 0.2, 1.0], p=[0.05, 0.9, 0.05])).astype(np.int8))
        scores.append(np.round(rng.normal(size=width), 1).astype(np.float32))  # one decimal: many ties
    totals: dict[str, list[float]] = {}
    for impression_labels, impression_scores in zip(labels, scores, strict=True):
        for name, value in impression_metrics(impression_labels, impression_scores).items():
            totals.setdefault(name, []).append(value)
    expected = {name: sum(values) / len(values) for name, values in totals.items()}
    assert mind_metrics(labels, scores) == expected
    with pytest.raises(ValueError, match="unlabeled"):
        mind_metrics([np.array([1, -1])], [np.array([0.5, 0.1])])
