"""Beyond accuracy: what the top k of each impression holds (diversity, novelty, popularity, the long tail,
calibration) and what the lists hold together (coverage, exposure Gini, personalisation).

A list is an impression's k best-scored candidates. Popularity is an item's clicks in the training split.
docs/metrics.md gives each formula with its source.
"""

from __future__ import annotations

import numpy as np

from once.api import MetricContext, RecipeError, ScoredSplit, head_items


class _TopK:
    """One column per cut-off in eval.k, named `<name>@k`."""

    name: str
    per_impression = True
    bootstrap = True
    needs_vectors = False

    def __init__(self, options, context: MetricContext):
        self.k = context.k
        self.columns = tuple(f"{self.name}@{k}" for k in self.k)

    def list_value(self, split: ScoredSplit, row: int, items: np.ndarray) -> float:
        raise NotImplementedError

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        result = {}
        for column, k in zip(self.columns, self.k, strict=True):
            result[column] = np.array([self.list_value(split, row, split.top(row, k)) for row in rows], np.float64)
        return result


def _category(context: MetricContext, field: str, metric: str) -> str:
    if field not in context.categories:
        raise RecipeError(
            f"metric '{metric}' reads the item category '{field}', which the prepared items do not have",
            where="eval.metrics",
            hint=f"Add {field} to items.categories, or give the metric another field"
            + (f" ({', '.join(context.categories)})." if context.categories else " (this data has none)."),
        )
    return field


class IntraListDiversity(_TopK):
    """ILD@k (Smyth & McClave 2001; Ziegler et al., WWW 2005): the mean pairwise distance of a list's items,
    1 - cosine of their item vectors (`by: vectors`) or 1 when their categories differ (`by: category`).
    NaN for a list of one item, and with `by: vectors` for a model whose items have no vector of their own."""

    def __init__(self, options, context: MetricContext):
        self.by = options.by
        self.field = _category(context, options.field, "ild") if options.by == "category" else None
        self.name = f"ild_{self.by}"
        self.needs_vectors = options.by == "vectors"
        super().__init__(options, context)

    def list_value(self, split: ScoredSplit, row: int, items: np.ndarray) -> float:
        n = len(items)
        if n < 2:
            return float("nan")
        if self.field is not None:
            categories = split.item_categories[self.field][items]
            same = (categories[:, None] == categories[None, :]).sum() - n
            return float(1 - same / (n * (n - 1)))
        if split.item_vectors is None:
            return float("nan")
        vectors = split.item_vectors[items].astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        cosine = vectors @ vectors.T
        return float(1 - (cosine.sum() - np.trace(cosine)) / (n * (n - 1)))


def _click_share(split: ScoredSplit) -> np.ndarray:
    """p(i): an item's share of training clicks, Laplace-smoothed so that an item never clicked has one."""
    clicks = split.item_clicks.astype(np.float64)
    return (clicks + 1) / (clicks.sum() + len(clicks))


class Novelty(_TopK):
    """Novelty@k (Zhou et al., PNAS 2010; Vargas & Castells, RecSys 2011): the mean self-information
    -log2 p(i) of a list's items, p(i) an item's Laplace-smoothed share of training clicks. Higher: less known."""

    name = "novelty"

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        information = -np.log2(_click_share(split))
        return {
            column: np.array([information[split.top(row, k)].mean() for row in rows], np.float64)
            for column, k in zip(self.columns, self.k, strict=True)
        }


class AveragePopularity(_TopK):
    """ARP@k (Abdollahpouri et al., FLAIRS 2019; RecBole's AveragePopularity): the mean training clicks of a
    list's items."""

    name = "popularity"

    def list_value(self, split: ScoredSplit, row: int, items: np.ndarray) -> float:
        return float(split.item_clicks[items].mean())


class TailShare(_TopK):
    """Tail@k (Abdollahpouri et al., RecSys 2017; RecBole's TailPercentage): the share of a list's items in the
    long tail. The head is the smallest set of most-clicked items holding `head_clicks` (0.2) of the training
    clicks; every other item, never-clicked ones included, is tail."""

    name = "tail"

    def __init__(self, options, context: MetricContext):
        self.head_clicks = options.head_clicks
        super().__init__(options, context)

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        tail = ~head_items(split.item_clicks, self.head_clicks)
        return {
            column: np.array([tail[split.top(row, k)].mean() for row in rows], np.float64)
            for column, k in zip(self.columns, self.k, strict=True)
        }


class _Lists:
    """A metric of the rows' lists together: one number per cut-off. Not bootstrapped: a resample repeats some
    impressions and leaves others out, which shrinks what the lists cover and biases the metric."""

    name: str
    per_impression = False
    bootstrap = False
    needs_vectors = False

    def __init__(self, options, context: MetricContext):
        self.k = context.k
        self.columns = tuple(f"{self.name}@{k}" for k in self.k)

    def lists_value(self, split: ScoredSplit, rows: np.ndarray, k: int) -> float:
        raise NotImplementedError

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, float]:
        return {c: self.lists_value(split, rows, k) for c, k in zip(self.columns, self.k, strict=True)}


def _exposure(split: ScoredSplit, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Over the catalogue (every item that was a candidate of the rows): how often each is in a top k."""
    catalogue = np.unique(np.concatenate([split.candidates[row] for row in rows]))
    shown = np.concatenate([split.top(row, k) for row in rows])
    return catalogue, np.bincount(np.searchsorted(catalogue, shown), minlength=len(catalogue))


class Coverage(_Lists):
    """Coverage@k (Ge et al., RecSys 2010, "prediction coverage"; RecBole's ItemCoverage): the share of the
    catalogue, every item that was a candidate in the rows, that appears in at least one top k."""

    name = "coverage"

    def lists_value(self, split: ScoredSplit, rows: np.ndarray, k: int) -> float:
        catalogue, counts = _exposure(split, rows, k)
        return float((counts > 0).sum() / len(catalogue))


class ExposureGini(_Lists):
    """Gini@k (RecBole's GiniIndex): the Gini index of how often each catalogue item is in a top k, with counts
    sorted ascending: sum_j (2j - n - 1) c_j / (n sum_j c_j). 0: equal exposure; near 1: a few items get it all."""

    name = "gini"

    def lists_value(self, split: ScoredSplit, rows: np.ndarray, k: int) -> float:
        _, counts = _exposure(split, rows, k)
        counts = np.sort(counts).astype(np.float64)
        n = len(counts)
        j = np.arange(1, n + 1)
        return float(((2 * j - n - 1) * counts).sum() / (n * counts.sum()))


class Personalisation(_Lists):
    """Personalisation@k (as microsoft/recommenders and NewsRecLib define it): 1 - the mean cosine similarity of
    two lists' item-indicator vectors over every pair of impressions, from the exposure counts in closed form:
    sum over pairs a != b of cos(a, b) = |sum_a x_a|^2 - n, with x_a the indicator over sqrt(list length)."""

    name = "personalisation"

    def lists_value(self, split: ScoredSplit, rows: np.ndarray, k: int) -> float:
        n = len(rows)
        if n < 2:
            return float("nan")
        catalogue = np.unique(np.concatenate([split.candidates[row] for row in rows]))
        lists = [split.top(row, k) for row in rows]
        weights = np.concatenate([np.full(len(items), 1 / np.sqrt(len(items))) for items in lists])
        totals = np.bincount(np.searchsorted(catalogue, np.concatenate(lists)), weights, minlength=len(catalogue))
        return float(1 - ((totals**2).sum() - n) / (n * (n - 1)))


class Calibration(_TopK):
    """Miscalibration@k (Steck, RecSys 2018): KL(p || q~) between the category distribution p of the items a
    user clicked before and q~ = (1 - alpha) q + alpha p, q that of the list. 0: the list mirrors the history.
    NaN for an impression whose history has no categorised item."""

    name = "calibration"

    def __init__(self, options, context: MetricContext):
        self.field = _category(context, options.field, "calibration")
        self.alpha = options.alpha
        super().__init__(options, context)

    def list_value(self, split: ScoredSplit, row: int, items: np.ndarray) -> float:
        categories = split.item_categories[self.field]
        history = categories[split.histories[row]]
        history = history[history > 0]
        if not len(history):
            return float("nan")
        size = int(categories.max()) + 1
        p = np.bincount(history, minlength=size) / len(history)
        q = np.bincount(categories[items], minlength=size) / len(items)
        q = (1 - self.alpha) * q + self.alpha * p
        present = p > 0
        return float((p[present] * np.log2(p[present] / q[present])).sum())
