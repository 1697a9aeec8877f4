"""Accuracy over each impression's candidates, and global AUC over all of a split's (impression, candidate) pairs.

Per impression, as the official MIND evaluate.py: AUC where the impression has both a click and a non-click;
MRR and nDCG@k where it has a click. HR@k (a click in the top k), Recall@k (clicks in the top k / clicks) and
Precision@k (clicks in the top k / k) where it has a click. The engine averages each over the impressions where
it is defined.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from once.api import MetricContext, ScoredSplit, auc, mrr, ndcg


class _PerImpression:
    """A metric of one impression's labels and scores; NaN where `defined(labels)` is false."""

    per_impression = True
    bootstrap = True
    needs_vectors = False
    columns: tuple[str, ...]

    def _values(self, split: ScoredSplit, rows: np.ndarray, value: Callable, defined: Callable) -> np.ndarray:
        values = np.full(len(rows), np.nan)
        for j, row in enumerate(rows):
            labels = split.labels[row]
            if defined(labels):
                values[j] = value(labels.astype(np.float64), split.scores[row].astype(np.float64))
        return values


def _clicked(labels: np.ndarray) -> bool:
    return bool(labels.sum() > 0)


class ImpressionAuc(_PerImpression):
    """AUC within each impression (MIND's `auc`; ties count one half)."""

    columns = ("auc",)

    def __init__(self, options, context: MetricContext):
        pass

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"auc": self._values(split, rows, auc, lambda labels: 0 < labels.sum() < len(labels))}


class ReciprocalRank(_PerImpression):
    """MIND's MRR: the mean of 1/rank over an impression's clicked candidates."""

    columns = ("mrr",)

    def __init__(self, options, context: MetricContext):
        pass

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"mrr": self._values(split, rows, mrr, _clicked)}


class _AtK(_PerImpression):
    """One column per cut-off in eval.k, from the clicks among the top k."""

    name: str

    def __init__(self, options, context: MetricContext):
        self.k = context.k
        self.columns = tuple(f"{self.name}@{k}" for k in self.k)

    def at(self, labels: np.ndarray, scores: np.ndarray, k: int) -> float:
        raise NotImplementedError

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {
            column: self._values(split, rows, lambda labels, scores, k=k: self.at(labels, scores, k), _clicked)
            for column, k in zip(self.columns, self.k, strict=True)
        }


def _top_clicks(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    return float(labels[np.argsort(-scores, kind="stable")[:k]].sum())


class Ndcg(_AtK):
    """MIND's nDCG@k: gain 2^label - 1, discount log2(rank + 1), over the ideal ordering's."""

    name = "ndcg"

    def at(self, labels, scores, k):
        return ndcg(labels, scores, k)


class HitRate(_AtK):
    """HR@k: 1 when a clicked candidate is among the top k, else 0."""

    name = "hit"

    def at(self, labels, scores, k):
        return float(_top_clicks(labels, scores, k) > 0)


class Recall(_AtK):
    """Recall@k: clicked candidates among the top k over all clicked candidates."""

    name = "recall"

    def at(self, labels, scores, k):
        return _top_clicks(labels, scores, k) / labels.sum()


class Precision(_AtK):
    """Precision@k: clicked candidates among the top k, over k (also when fewer than k candidates were shown)."""

    name = "precision"

    def at(self, labels, scores, k):
        return _top_clicks(labels, scores, k) / k


class GlobalAuc:
    """AUC over every (impression, candidate) pair of the rows at once, as CTR work reports it (sklearn's
    roc_auc_score over the pooled pairs): it also asks that scores be comparable across impressions."""

    columns = ("global_auc",)
    per_impression = False
    bootstrap = True
    needs_vectors = False

    def __init__(self, options, context: MetricContext):
        pass

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, float]:
        labels = np.concatenate([split.labels[row] for row in rows])
        scores = np.concatenate([split.scores[row] for row in rows])
        if labels.min() == labels.max():
            return {"global_auc": float("nan")}
        return {"global_auc": auc(labels, scores)}
