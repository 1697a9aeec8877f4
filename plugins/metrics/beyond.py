"""Beyond accuracy: what the top k of each impression holds (diversity, novelty, popularity, the long tail,
calibration) and what the lists hold together (coverage, exposure Gini, personalisation).

A list is an impression's k best-scored candidates (fewer when it has fewer). Popularity is an item's clicks in
the training split. docs/metrics.md gives each formula with its source.
"""

from __future__ import annotations

import numpy as np

from once.api import MetricContext, RecipeError, ScoredSplit, head_items


class _AtCutoffs:
    """A metric with one column per cut-off in eval.k, named `<name>@k`."""

    name: str
    needs_vectors = False
    needs_labels = False  # what a list holds, not what was clicked: `once recommend --measure` reads these too

    def __init__(self, options, context: MetricContext):
        self.k = context.k
        self.columns = tuple(f"{self.name}@{k}" for k in self.k)


class _TopK(_AtCutoffs):
    """One value per impression for each cut-off, from its list."""

    per_impression = True
    bootstrap = True

    def lists(self, split: ScoredSplit, items: np.ndarray, shown: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per row, from its list's items `(rows, k)` and which of them are shown."""
        raise NotImplementedError

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        result = {}
        for column, k in zip(self.columns, self.k, strict=True):
            items, _, shown = split.top(rows, k)
            with np.errstate(invalid="ignore", divide="ignore"):
                result[column] = self.lists(split, items, shown, rows).astype(np.float64)
        return result


def _mean_over_list(values: np.ndarray, shown: np.ndarray) -> np.ndarray:
    return np.where(shown, values, 0).sum(axis=1) / shown.sum(axis=1)


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
        self.field = _category(context, options.field, "ild") if options.by == "category" else None
        self.name = f"ild_{options.by}"
        self.needs_vectors = options.by == "vectors"
        super().__init__(options, context)

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
        # one pairwise matrix at the largest cut-off: a smaller cut-off's lists are its prefixes
        items, _, shown = split.top(rows, max(self.k))
        if self.field is not None:
            categories = split.item_categories[self.field][items]
            distance = (categories[:, :, None] != categories[:, None, :]).astype(np.float32)
        elif split.item_vectors is None:
            return {column: np.full(len(rows), np.nan) for column in self.columns}
        else:
            table = split.item_vectors.astype(np.float32, copy=False)
            unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)  # each item once
            vectors = unit[items]
            distance = 1 - vectors @ vectors.transpose(0, 2, 1)
        pairs = shown[:, :, None] & shown[:, None, :] & ~np.eye(items.shape[1], dtype=bool)
        distance = np.where(pairs, distance, 0).astype(np.float64)
        result = {}
        for column, k in zip(self.columns, self.k, strict=True):
            n = shown[:, :k].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                result[column] = distance[:, :k, :k].sum(axis=(1, 2)) / (n * (n - 1))
        return result


class Novelty(_TopK):
    """Novelty@k (Zhou et al., PNAS 2010; Vargas & Castells, RecSys 2011): the mean self-information
    -log2 p(i) of a list's items, p(i) an item's share of training clicks, Laplace-smoothed so that an item
    never clicked has one. Higher: less known."""

    name = "novelty"

    def lists(self, split, items, shown, rows):
        clicks = split.item_clicks.astype(np.float64)
        information = -np.log2((clicks + 1) / (clicks.sum() + len(clicks)))
        return _mean_over_list(information[items], shown)


class AveragePopularity(_TopK):
    """ARP@k (Abdollahpouri et al., FLAIRS 2019; RecBole's AveragePopularity): the mean training clicks of a
    list's items."""

    name = "popularity"

    def lists(self, split, items, shown, rows):
        return _mean_over_list(split.item_clicks[items].astype(np.float64), shown)


class TailShare(_TopK):
    """Tail@k (Abdollahpouri et al., RecSys 2017; RecBole's TailPercentage): the share of a list's items in the
    long tail. The head is the smallest set of most-clicked items holding `head_clicks` (0.2) of the training
    clicks; every other item, never-clicked ones included, is tail."""

    name = "tail"

    def __init__(self, options, context: MetricContext):
        self.head_clicks = options.head_clicks
        super().__init__(options, context)

    def lists(self, split, items, shown, rows):
        tail = ~head_items(split.item_clicks, self.head_clicks)
        return _mean_over_list(tail[items].astype(np.float64), shown)


class Calibration(_TopK):
    """Miscalibration@k (Steck, RecSys 2018): KL(p || q~) in bits between the category distribution p of the
    items a user clicked before and q~ = (1 - alpha) q + alpha p, q that of the list. 0: the list mirrors the
    history. NaN for an impression whose history has no categorised item."""

    name = "calibration"

    def __init__(self, options, context: MetricContext):
        self.field = _category(context, options.field, "calibration")
        self.alpha = options.alpha
        super().__init__(options, context)

    def lists(self, split, items, shown, rows):
        categories = split.item_categories[self.field]
        size = int(categories.max()) + 1
        history = np.zeros((len(rows), size))
        lengths = [len(split.histories[row]) for row in rows]
        if sum(lengths):
            clicked = categories[np.concatenate([split.histories[row] for row in rows])]
            np.add.at(history, (np.repeat(np.arange(len(rows)), lengths), clicked), 1)
        history[:, 0] = 0  # category 0: none
        listed = np.zeros((len(rows), size))
        np.add.at(listed, (np.repeat(np.arange(len(rows)), items.shape[1]), categories[items].ravel()), shown.ravel())
        p = history / history.sum(axis=1, keepdims=True)
        q = (1 - self.alpha) * listed / listed.sum(axis=1, keepdims=True) + self.alpha * p
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1) / np.where(p > 0, q, 1)), 0)
        return np.where(history.sum(axis=1) > 0, terms.sum(axis=1), np.nan)


class _Lists(_AtCutoffs):
    """A metric of the rows' lists together: one number per cut-off. Not bootstrapped: a resample repeats some
    impressions and leaves others out, which shrinks what the lists cover and biases the metric."""

    per_impression = False
    bootstrap = False

    def together(self, split: ScoredSplit, rows: np.ndarray, k: int, catalogue: np.ndarray) -> float:
        """The metric of the rows' top-k lists; `catalogue`: every item that was a candidate of the rows."""
        raise NotImplementedError

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, float]:
        catalogue = _catalogue(split, rows)
        return {c: self.together(split, rows, k, catalogue) for c, k in zip(self.columns, self.k, strict=True)}


def _catalogue(split: ScoredSplit, rows: np.ndarray) -> np.ndarray:
    """Every item that was a candidate of the rows, sorted (read off the ranking: one array, no loop over rows)."""
    items, _, shown = split.ranking
    present = np.zeros(len(split.item_clicks), bool)
    present[items[rows][shown[rows]]] = True
    return np.flatnonzero(present)


def _exposure(split: ScoredSplit, rows: np.ndarray, k: int, catalogue: np.ndarray) -> np.ndarray:
    """How often each catalogue item is in a top k of the rows."""
    items, _, shown = split.top(rows, k)
    return np.bincount(items[shown], minlength=len(split.item_clicks))[catalogue]


class Coverage(_Lists):
    """Coverage@k (Ge et al., RecSys 2010, "prediction coverage"; RecBole's ItemCoverage): the share of the
    catalogue, every item that was a candidate in the rows, that appears in at least one top k."""

    name = "coverage"

    def together(self, split, rows, k, catalogue):
        return float((_exposure(split, rows, k, catalogue) > 0).sum() / len(catalogue))


class ExposureGini(_Lists):
    """Gini@k (RecBole's GiniIndex): the Gini index of how often each catalogue item is in a top k, with counts
    sorted ascending: sum_j (2j - n - 1) c_j / (n sum_j c_j). 0: equal exposure; near 1: a few items get it all."""

    name = "gini"

    def together(self, split, rows, k, catalogue):
        counts = np.sort(_exposure(split, rows, k, catalogue)).astype(np.float64)
        n = len(counts)
        j = np.arange(1, n + 1)
        return float(((2 * j - n - 1) * counts).sum() / (n * counts.sum()))


class Personalisation(_Lists):
    """Personalisation@k (as microsoft/recommenders and NewsRecLib define it): 1 - the mean cosine similarity of
    two lists' item-indicator vectors over every pair of impressions, from the exposure in closed form:
    sum over pairs a != b of cos(a, b) = |sum_a x_a|^2 - n, with x_a a list's indicator over sqrt(its length)."""

    name = "personalisation"

    def together(self, split, rows, k, catalogue):
        n = len(rows)
        if n < 2:
            return float("nan")
        items, _, shown = split.top(rows, k)
        weights = np.broadcast_to(1 / np.sqrt(shown.sum(axis=1, keepdims=True)), shown.shape)[shown]
        totals = np.bincount(items[shown], weights)  # per item; items in no list add nothing
        return float(1 - ((totals**2).sum() - n) / (n * (n - 1)))
