"""Confidence intervals and paired significance between runs tested on the same impressions.

Intervals are percentile bootstrap intervals over impressions (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13): the test impressions are resampled with replacement, `resamples` times from a seeded
generator, and each metric is recomputed on every resample. Runs are paired: every run is measured on the same
resampled impressions. A difference's p-value is the paired bootstrap test of Berg-Kirkpatrick et al. ("An
Empirical Investigation of Statistical Significance in NLP", EMNLP 2012; Efron & Tibshirani §16.4): the share of
resampled differences that stray from the observed one by at least the observed one, a test of "no difference"
on the bootstrap distribution shifted to zero. Holm's step-down correction (Scand. J. Statist. 1979) adjusts the
p-values of the metrics compared for one pair of runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from once.errors import OnceError
from once.measure import MetricSuite, SavedImpressions, nanmean
from once.protocols import Metric

CHUNK = 64  # resamples drawn at once for the per-impression columns (memory: CHUNK x impressions floats)


@dataclass(frozen=True)
class Estimate:
    """A metric of one run: its value on the test impressions and a 95% bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """A metric of a run minus the same metric of the baseline run, on the same impressions."""

    value: float
    low: float
    high: float
    p: float  # paired bootstrap test of no difference
    p_holm: float  # Holm-adjusted across the metrics compared for this pair of runs


@dataclass(frozen=True)
class Comparison:
    columns: list[str]
    estimates: list[dict[str, Estimate]]  # per run
    differences: list[dict[str, Difference]]  # per run after the first: that run minus the first
    resamples: int


def check_paired(runs: list[SavedImpressions], names: list[str]) -> None:
    """Refuse runs that were not tested on the same impressions with the same candidates, saying how they differ."""
    first = runs[0]
    for run, name in zip(runs[1:], names[1:], strict=True):
        if len(run.impression_ids) != len(first.impression_ids):
            raise OnceError(
                f"{name} was tested on {len(run.impression_ids)} impressions and {names[0]} on"
                f" {len(first.impression_ids)}: paired intervals need the same test impressions",
                hint="Compare runs of the same dataset and split (the same recipe data section).",
            )
        differ = np.flatnonzero(run.impression_ids != first.impression_ids)
        if len(differ):
            i = differ[0]
            raise OnceError(
                f"{name} and {names[0]} were tested on other impressions ({len(differ)} differ; the first: row"
                f" {i}, '{run.impression_ids[i]}' against '{first.impression_ids[i]}')",
                hint="Compare runs of the same dataset and split.",
            )
        for i, (a, b) in enumerate(zip(run.candidate_ids, first.candidate_ids, strict=True)):
            if len(a) != len(b) or (a != b).any():
                raise OnceError(
                    f"impression '{first.impression_ids[i]}' has other candidates in {name} than in {names[0]}:"
                    " the runs were not ranked over the same lists",
                    hint="Compare runs of the same dataset, split and candidate lists.",
                )


def _resamples(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """(chunk, n) index arrays of bootstrap resamples, the same sequence for every run."""
    rng = np.random.default_rng(seed)
    left = resamples
    while left > 0:
        size = min(CHUNK, left)
        yield rng.integers(0, n, size=(size, n))
        left -= size


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, values, 0).sum(axis=1) / defined.sum(axis=1)


def bootstrap(
    suite: MetricSuite, runs: list[SavedImpressions], resamples: int = 1000, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(columns, observed (runs, columns), resampled (resamples, runs, columns)): every column of every run on
    the test impressions and on the same `resamples` resamples of them."""
    columns = [c for c in suite.columns if all(c in run.values or not _per_impression(suite, c) for run in runs)]
    n = len(runs[0].impression_ids)
    everything = np.arange(n)
    observed = np.array([[_value(suite, run, c, everything) for c in columns] for run in runs])
    drawn = np.full((resamples, len(runs), len(columns)), np.nan)  # NaN: a metric that is not bootstrapped
    start = 0
    for chunk in _resamples(n, resamples, seed):
        for r, run in enumerate(runs):
            for j, column in enumerate(columns):
                if not _metric(suite, column).bootstrap:
                    continue
                if _per_impression(suite, column):
                    drawn[start : start + len(chunk), r, j] = _nanmean_rows(run.values[column][chunk])
                else:
                    drawn[start : start + len(chunk), r, j] = [_value(suite, run, column, rows) for rows in chunk]
        start += len(chunk)
    return columns, observed, drawn


def _metric(suite: MetricSuite, column: str) -> Metric:
    return next(m for m in suite.metrics if column in m.columns)


def _per_impression(suite: MetricSuite, column: str) -> bool:
    return _metric(suite, column).per_impression


def _value(suite: MetricSuite, run: SavedImpressions, column: str, rows: np.ndarray) -> float:
    if _per_impression(suite, column):
        return nanmean(run.values[column][rows])
    return float(_metric(suite, column)(run.scored, rows)[column])


def _interval(drawn: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of resampled values (NaN, NaN for a metric that is not bootstrapped)."""
    drawn = drawn[~np.isnan(drawn)]
    if not len(drawn):
        return float("nan"), float("nan")
    low, high = np.percentile(drawn, [2.5, 97.5])
    return float(low), float(high)


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order."""
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def compare(
    suite: MetricSuite, runs: list[SavedImpressions], names: list[str], resamples: int = 1000, seed: int = 0
) -> Comparison:
    """Each run's metrics with 95% intervals, and each later run against the first: difference, interval, p."""
    check_paired(runs, names)
    columns, observed, drawn = bootstrap(suite, runs, resamples, seed)
    estimates = [
        {c: Estimate(observed[r, j], *_interval(drawn[:, r, j])) for j, c in enumerate(columns)}
        for r in range(len(runs))
    ]
    tested = [j for j, c in enumerate(columns) if _metric(suite, c).bootstrap]
    differences = []
    for r in range(1, len(runs)):
        delta = observed[r] - observed[0]
        resampled = drawn[:, r] - drawn[:, 0]
        p = np.full(len(columns), np.nan)
        adjusted = np.full(len(columns), np.nan)
        for j in tested:
            p[j] = (1 + (np.abs(resampled[:, j] - delta[j]) >= abs(delta[j])).sum()) / (resamples + 1)
        adjusted[tested] = holm(p[tested].tolist())
        differences.append(
            {c: Difference(delta[j], *_interval(resampled[:, j]), p[j], adjusted[j]) for j, c in enumerate(columns)}
        )
    return Comparison(columns, estimates, differences, resamples)
