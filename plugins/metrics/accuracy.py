"""Accuracy over each impression's candidates, and global AUC and logloss over all of a split's (impression,
candidate) pairs.

Per impression, as the official MIND evaluate.py: AUC where the impression has both a click and a non-click;
MRR and nDCG@k where it has a click. HR@k (a click in the top k), Recall@k (clicks in the top k / clicks) and
Precision@k (clicks in the top k / k) where it has a click. The engine averages each over the impressions where
it is defined. Candidates are ranked as MIND's evaluate.py ranks them (tied scores: the later candidate first).
"""

from __future__ import annotations

import numpy as np

from once.api import MetricContext, RecipeError, ScoredSplit, auc


def _where_clicked(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The values of the impressions with a click; NaN for the others."""
    clicks = labels.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clicks > 0, values, np.nan)


class _PerImpression:
    per_impression = True
    bootstrap = True
    needs_vectors = False
    needs_labels = True
    columns: tuple[str, ...]

    def __init__(self, options, context: MetricContext):
        self.k = context.k


class ImpressionAuc(_PerImpression):
    """AUC within each impression (MIND's `auc`; ties count one half)."""

    columns = ("auc",)

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        values = np.full(len(rows), np.nan)
        for j, row in enumerate(rows):
            labels = split.labels[row]
            if 0 < labels.sum() < len(labels):
                values[j] = auc(labels, split.scores[row])
        return {"auc": values}


class ReciprocalRank(_PerImpression):
    """MIND's MRR: the mean of 1/rank over an impression's clicked candidates."""

    columns = ("mrr",)

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        labels = split.ranking[1][rows]  # every candidate's label, best first
        with np.errstate(invalid="ignore", divide="ignore"):
            reciprocal = (labels / np.arange(1, labels.shape[1] + 1)).sum(axis=1) / labels.sum(axis=1)
        return {"mrr": _where_clicked(labels, reciprocal)}


class _AtK(_PerImpression):
    """One column per cut-off in eval.k, from the labels of the top k."""

    name: str

    def __init__(self, options, context: MetricContext):
        super().__init__(options, context)
        self.columns = tuple(f"{self.name}@{k}" for k in self.k)

    def at(self, top: np.ndarray, ranked: np.ndarray, k: int) -> np.ndarray:
        """Per row, from the top k's labels and every candidate's labels best first."""
        raise NotImplementedError

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        ranked = split.ranking[1][rows]
        result = {}
        for column, k in zip(self.columns, self.k, strict=True):
            top = split.top(rows, k)[1]
            with np.errstate(invalid="ignore", divide="ignore"):
                result[column] = _where_clicked(ranked, self.at(top, ranked, k))
        return result


class Ndcg(_AtK):
    """MIND's nDCG@k: gain 2^label - 1, discount log2(rank + 1), over the ideal ordering's."""

    name = "ndcg"

    def at(self, top, ranked, k):
        discount = 1 / np.log2(np.arange(2, k + 2))
        ideal = -np.sort(-ranked, axis=1)[:, :k]
        ideal = np.pad(ideal, ((0, 0), (0, k - ideal.shape[1])))
        return ((2**top - 1) * discount).sum(axis=1) / ((2**ideal - 1) * discount).sum(axis=1)


class HitRate(_AtK):
    """HR@k: 1 when a clicked candidate is among the top k, else 0."""

    name = "hit"

    def at(self, top, ranked, k):
        return (top.sum(axis=1) > 0).astype(np.float64)


class Recall(_AtK):
    """Recall@k: clicked candidates among the top k over all clicked candidates."""

    name = "recall"

    def at(self, top, ranked, k):
        return top.sum(axis=1) / ranked.sum(axis=1)


class Precision(_AtK):
    """Precision@k: clicked candidates among the top k, over k (also when fewer than k candidates were shown)."""

    name = "precision"

    def at(self, top, ranked, k):
        return top.sum(axis=1) / k


class _Pooled:
    """A metric over every (impression, candidate) pair of the rows at once, as CTR work reports it."""

    per_impression = False
    bootstrap = True
    needs_vectors = False
    needs_labels = True
    columns: tuple[str, ...]

    def __init__(self, options, context: MetricContext):
        pass

    @staticmethod
    def pooled(split: ScoredSplit, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores) of the rows' pairs, as float64."""
        labels = np.concatenate([split.labels[row] for row in rows]).astype(np.float64)
        return labels, np.concatenate([split.scores[row] for row in rows]).astype(np.float64)


class GlobalAuc(_Pooled):
    """AUC over every pair of the rows pooled (sklearn's roc_auc_score over them): it also asks that scores be
    comparable across impressions."""

    columns = ("global_auc",)

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, float]:
        labels, scores = self.pooled(split, rows)
        if not len(labels) or labels.min() == labels.max():
            return {"global_auc": float("nan")}
        return {"global_auc": auc(labels, scores)}


class LogLoss(_Pooled):
    """Binary cross-entropy of the click probabilities over every pair of the rows pooled; lower is better. The
    probability is `sigmoid(score + log(train.unclicked_rate))`: a model trained on a share r of the unclicked
    rows overestimates the odds of a click by 1/r, and adding log(r) to its logit calibrates it back (He et al.
    2014, "Practical lessons from predicting clicks on ads at Facebook"). Only the ranking task's scores are
    probabilities: under matching they are logits up to a constant per impression."""

    columns = ("logloss",)

    def __init__(self, options, context: MetricContext):
        if context.task != "ranking":
            raise RecipeError(
                "logloss (eval.metrics) scores click probabilities, which only train.task: ranking trains; under "
                f"train.task: {context.task} a score is a logit up to a constant per impression, so its logloss "
                "would mean nothing",
                where="eval.metrics",
                hint="Set train.task: ranking, or drop logloss from eval.metrics (global_auc compares across "
                "impressions under either task).",
            )
        self.offset = float(np.log(context.unclicked_rate))

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, float]:
        labels, scores = self.pooled(split, rows)
        if not len(labels):
            return {"logloss": float("nan")}
        logits = scores + self.offset
        # -log sigmoid(x) = log(1 + e^-x), computed without overflow for either sign
        losses = np.logaddexp(0.0, -logits) * labels + np.logaddexp(0.0, logits) * (1 - labels)
        return {"logloss": float(losses.mean())}
