"""Ranking metrics exactly as the official MIND evaluate.py computes them, averaged over impressions."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), as sklearn's roc_auc_score."""
    labels = np.asarray(labels) > 0
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average 1-based rank within each run of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def mrr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean reciprocal rank over the clicked items (not first hit only)."""
    ranked = np.take(labels, np.argsort(scores)[::-1])
    return float(np.sum(ranked / (np.arange(len(ranked)) + 1)) / np.sum(ranked))


def dcg(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    ranked = np.take(labels, np.argsort(scores)[::-1][:k])
    return float(np.sum((2**ranked - 1) / np.log2(np.arange(len(ranked)) + 2)))


def ndcg(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    return dcg(labels, scores, k) / dcg(labels, labels, k)


def impression_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The four MIND metrics for one impression: none without a click, no AUC when every candidate is clicked."""
    labels = np.asarray(labels, dtype=np.float64)
    if (labels < 0).any():
        raise ValueError("unlabeled candidates (label -1) cannot be scored")
    scores = np.asarray(scores, dtype=np.float64)
    if labels.sum() == 0:
        return {}
    result = {"mrr": mrr(labels, scores), "ndcg@5": ndcg(labels, scores, 5), "ndcg@10": ndcg(labels, scores, 10)}
    if labels.sum() < len(labels):
        result["auc"] = auc(labels, scores)
    return result


def mind_metrics(labels: Iterable[np.ndarray], scores: Iterable[np.ndarray]) -> dict[str, float]:
    """Each metric averaged over the impressions where it is defined."""
    totals = dict.fromkeys(METRICS, 0.0)
    counts = dict.fromkeys(METRICS, 0)
    for impression_labels, impression_scores in zip(labels, scores, strict=True):
        for name, value in impression_metrics(impression_labels, impression_scores).items():
            totals[name] += value
            counts[name] += 1
    return {name: totals[name] / counts[name] if counts[name] else float("nan") for name in METRICS}


def head_items(clicks: np.ndarray, share: float) -> np.ndarray:
    """(items,) True for the head: the smallest set of most-clicked items holding `share` of all clicks (none
    when nothing was clicked); the rest, never-clicked items included, is the long tail."""
    clicks = np.asarray(clicks, dtype=np.float64)
    head = np.zeros(len(clicks), bool)
    if clicks.sum() > 0:
        order = np.argsort(-clicks, kind="stable")
        head[order[: int(np.searchsorted(np.cumsum(clicks[order]), share * clicks.sum())) + 1]] = True
    return head
