"""The recipe's metrics (eval.metrics) over a scored split: their averages, by group of users and of items, and
the per-impression file that `once compare` pairs runs on."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from once.data.prepare import PreparedData, Split
from once.errors import DataError, RecipeError
from once.evaluate import score_split, split_item_vectors, user_groups
from once.files import write_atomic
from once.metrics import head_items
from once.model import item_clicks
from once.protocols import Metric, MetricContext, ScoredSplit
from once.recipe import ResolvedRecipe
from once.trained import TrainedModel

SAVED = (
    "impression_ids",
    "item_ids",
    "offsets",
    "candidates",
    "labels",
    "scores",
    "history_lengths",
    "item_clicks",
    "categories",
)  # the arrays of a run's per-impression file, besides one "value:<column>" per metric column
HEAD_CLICKS = 0.2  # the head of the item groups: the most-clicked items holding this share of training clicks


@dataclass(frozen=True)
class MetricSuite:
    """The metrics a recipe lists, built; each column is reported once."""

    metrics: tuple[Metric, ...]

    @classmethod
    def build(
        cls, resolved: ResolvedRecipe, categories: tuple[str, ...], k: tuple[int, ...] | None = None
    ) -> MetricSuite:
        """The recipe's metrics, at its cut-offs eval.k or at `k`."""
        train = resolved.recipe.train
        context = MetricContext(
            k=tuple(resolved.recipe.eval.k) if k is None else k,
            categories=categories,
            task=train.task,
            unclicked_rate=train.unclicked_rate,
        )
        metrics = tuple(part.load()(options, context) for part, options in resolved.metrics)
        seen: dict[str, str] = {}
        for (part, _), metric in zip(resolved.metrics, metrics, strict=True):
            for column in metric.columns:
                if column in seen:
                    raise RecipeError(
                        f"metrics '{seen[column]}' and '{part.name}' both report '{column}'",
                        where="eval.metrics",
                        hint="List each metric once (give it other options to report another column).",
                    )
                seen[column] = part.name
        return cls(metrics)

    def without_labels(self) -> MetricSuite:
        """The metrics that read no click labels (beyond accuracy): what a list of recommendations can be measured
        by. A metric that does not say (`needs_labels`) is taken to read them."""
        return MetricSuite(tuple(metric for metric in self.metrics if not getattr(metric, "needs_labels", True)))

    @property
    def columns(self) -> list[str]:
        return [column for metric in self.metrics for column in metric.columns]

    @property
    def needs_vectors(self) -> bool:
        return any(metric.needs_vectors for metric in self.metrics)

    def values(self, split: ScoredSplit) -> dict[str, np.ndarray]:
        """Every per-impression column over all of the split's impressions (NaN where undefined)."""
        rows = np.arange(len(split))
        per_impression = [metric for metric in self.metrics if metric.per_impression]
        return {c: np.asarray(v, np.float64) for metric in per_impression for c, v in metric(split, rows).items()}

    def summary(
        self, split: ScoredSplit, rows: np.ndarray | None = None, values: dict[str, np.ndarray] | None = None
    ) -> dict[str, float]:
        """Each column over `rows` (all by default): per-impression ones averaged where defined."""
        rows = np.arange(len(split)) if rows is None else np.asarray(rows)
        result: dict[str, float] = {}
        for metric in self.metrics:
            if metric.per_impression:
                given = values is not None and all(c in values for c in metric.columns)
                computed = {c: values[c][rows] for c in metric.columns} if given else metric(split, rows)
                result.update({c: nanmean(np.asarray(v, np.float64)) for c, v in computed.items()})
            else:
                result.update({c: float(v) for c, v in metric(split, rows).items()})
        return result


def nanmean(values: np.ndarray) -> float:
    """The mean of the defined (not NaN) values; NaN when there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def category_fields(data: PreparedData) -> tuple[str, ...]:
    return tuple(field for field, size in data.category_sizes.items() if size > 0)


def scored_split(
    data: PreparedData, split: Split, scores: list[np.ndarray], item_vectors: np.ndarray | None = None
) -> ScoredSplit:
    """What metrics read about a scored split."""
    return ScoredSplit(
        labels=[split.labels[i] for i in range(len(split))],
        scores=[np.asarray(s) for s in scores],
        candidates=[split.candidates[i] for i in range(len(split))],
        histories=[split.history[i] for i in range(len(split))],
        item_vectors=item_vectors,
        **item_side(data),
    )


def item_side(data: PreparedData) -> dict[str, Any]:
    """What metrics read per item: training clicks and category ids."""
    return {
        "item_clicks": item_clicks(data).numpy().astype(np.int64),
        "item_categories": {field: data.features[field].numpy() for field in category_fields(data)},
    }


def measure(
    suite: MetricSuite, model, data: PreparedData, split: Split, settings: dict, fast: bool = True
) -> tuple[list[np.ndarray], ScoredSplit, dict[str, np.ndarray], dict[str, float]]:
    """Score the split and measure it: (scores, the scored split, its per-impression values, the suite's
    summary). The item vectors that the fast path scores from also serve the metrics that read vectors (none
    for a model whose items depend on their reader, NPA's)."""
    vectors = None
    if suite.needs_vectors and not model.user_conditioned:
        vectors = split_item_vectors(model, split, **settings)
    scores = score_split(model, split, fast=fast, items=vectors if fast else None, **settings)
    scored = scored_split(data, split, scores, None if vectors is None else vectors.cpu().numpy())
    values = suite.values(scored)
    return scores, scored, values, suite.summary(scored, values=values)


def measure_lists(
    trained: TrainedModel, users: list[str], top: int, candidates: list[int] | None, include_history: bool
) -> dict[str, float]:
    """The recipe's beyond-accuracy metrics at k = `top` over the full-catalogue lists `once recommend` gives these
    users: one row per user, its candidates every item the user could be recommended (the catalogue of coverage
    and Gini), scored by the model."""
    data = trained.data
    suite = MetricSuite.build(trained.resolved, category_fields(data), (top,)).without_labels()
    if not suite.metrics:
        raise RecipeError(
            "the recipe's eval.metrics have none that measures lists without clicks",
            where="eval.metrics",
            hint="Add beyond-accuracy metrics, e.g. --set 'eval.metrics=[auc, ild, coverage, novelty]' at training.",
        )
    pools, scores, histories = [], [], []
    for _, index, pool, values in trained.scored_pools(users, candidates, include_history):
        keep = values != float("-inf")
        pools.append(pool[keep].cpu().numpy())
        scores.append(values[keep].cpu().numpy())
        histories.append(trained.history(index))
    lists = ScoredSplit(
        labels=[np.zeros(len(p)) for p in pools],
        scores=scores,
        candidates=pools,
        histories=histories,
        item_vectors=trained.item_vectors.cpu().numpy(),
        **item_side(data),
    )
    return suite.summary(lists)


def history_groups(lengths: np.ndarray, bins: list[int]) -> dict[str, np.ndarray]:
    """Impressions by how many items the user really clicked before: at most bins[0], then each bin, then more."""
    groups, low = {}, 0
    for high in bins:
        name = f"history <= {high}" if low == 0 else f"history {low + 1}-{high}"
        groups[name] = np.flatnonzero((lengths > low) & (lengths <= high) if low else lengths <= high)
        low = high
    groups[f"history > {low}"] = np.flatnonzero(lengths > low)
    return groups


def restricted(split: ScoredSplit, keep: np.ndarray) -> tuple[ScoredSplit, np.ndarray]:
    """The split with only the candidates where `keep[item]` holds, and the impressions that still have one."""
    masks = [keep[c] for c in split.candidates]
    view = replace(
        split,
        labels=[labels[m] for labels, m in zip(split.labels, masks, strict=True)],
        scores=[scores[m] for scores, m in zip(split.scores, masks, strict=True)],
        candidates=[c[m] for c, m in zip(split.candidates, masks, strict=True)],
    )
    return view, np.flatnonzero([m.any() for m in masks])


def group_metrics(
    suite: MetricSuite, scored: ScoredSplit, split: Split, data: PreparedData, bins: list[int], cold_history: int
) -> dict[str, dict[str, float]]:
    """Every column by group: users by history length (and cold/warm as `augment.cold_history` says), and
    candidates unseen in training against seen, head against tail by training clicks. An item group keeps each
    impression's candidates of that group only; a group that is empty or the whole split is left out."""
    values = suite.values(scored)
    groups: dict[str, dict[str, float]] = {}
    kept: list[np.ndarray] = []
    for name, rows in {**user_groups(split, cold_history), **history_groups(split.real_history, bins)}.items():
        if 0 < len(rows) < len(split) and not any(np.array_equal(rows, other) for other in kept):
            kept.append(rows)
            groups[name] = {**suite.summary(scored, rows, values), "impressions": len(rows)}
    train = data.splits["train"]
    seen = np.zeros(data.num_items, bool)
    seen[train.candidates.values] = seen[train.history.values] = True
    head = head_items(scored.item_clicks, HEAD_CLICKS)
    for name, keep in {
        "cold items (unseen in training)": ~seen,
        "seen items": seen,
        f"head items (top {HEAD_CLICKS:.0%} of clicks)": head,
        "tail items": ~head,
    }.items():
        view, rows = restricted(scored, keep)
        if len(rows) > 0 and any(len(c) < len(o) for c, o in zip(view.candidates, scored.candidates, strict=True)):
            groups[name] = {**suite.summary(view, rows), "impressions": len(rows)}
    return groups


def save_impressions(
    path: Path, split: Split, data: PreparedData, scored: ScoredSplit, values: dict[str, np.ndarray]
) -> None:
    """One row per impression: its id, candidates, labels and scores, history length and every per-impression
    metric value; enough to recompute any metric of the lists and to pair the run with another later."""
    arrays = {
        "impression_ids": np.asarray(split.impression_ids, dtype=str),
        "item_ids": np.asarray(data.item_ids, dtype=str),
        "offsets": split.candidates.offsets,
        "candidates": split.candidates.values,
        "labels": split.labels.values,
        "scores": np.concatenate(scored.scores).astype(np.float32) if len(scored) else np.zeros(0, np.float32),
        "history_lengths": split.real_history,
        "item_clicks": scored.item_clicks,
        "categories": np.asarray(category_fields(data), dtype=str),
        **{f"value:{column}": v for column, v in values.items()},
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


@dataclass(frozen=True)
class SavedImpressions:
    """A run's per-impression file, read back."""

    path: Path
    impression_ids: np.ndarray
    candidate_ids: list[np.ndarray]
    scored: ScoredSplit
    history_lengths: np.ndarray
    values: dict[str, np.ndarray]
    categories: tuple[str, ...]  # the item category fields the run's data had (what its metrics were built with)

    @classmethod
    def read(cls, path: Path) -> SavedImpressions:
        try:
            with np.load(path, allow_pickle=False) as file:
                arrays = {name: file[name] for name in file.files}
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read the per-impression file: {error}", where=str(path)) from None
        missing = sorted(set(SAVED) - set(arrays))
        if missing:
            raise DataError(f"the per-impression file lacks {', '.join(missing)}: not one ONCE wrote", where=str(path))
        cuts = arrays["offsets"]

        def rows(flat: np.ndarray) -> list[np.ndarray]:
            return [flat[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

        candidates = rows(arrays["candidates"])
        scored = ScoredSplit(
            labels=rows(arrays["labels"]),
            scores=rows(arrays["scores"]),
            candidates=candidates,
            histories=[np.zeros(0, np.int64)] * (len(cuts) - 1),
            item_clicks=arrays["item_clicks"],
            item_categories={},
        )
        values = {name.removeprefix("value:"): v for name, v in arrays.items() if name.startswith("value:")}
        item_ids = arrays["item_ids"]
        return cls(
            path,
            arrays["impression_ids"],
            [item_ids[c] for c in candidates],
            scored,
            arrays["history_lengths"],
            values,
            tuple(arrays["categories"].tolist()),
        )
