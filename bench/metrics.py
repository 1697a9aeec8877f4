"""Publishable evaluation on Goodreads-MIND: NRMS, NAML, LSTUR and popularity with 95% intervals and paired
p-values against NRMS, the beyond-accuracy table, and what the extra metrics cost at evaluation.

    python bench/metrics.py [--users 5000] [--epochs 3] [--resamples 1000] [--write docs/benchmarks.md]

Trains each built-in `goodreads-*` recipe (seed 0) with every metric that needs no item category (Goodreads books
have none) into the ONCE cache, reusing a finished run of the same recipe; then scores the test split again,
timing the scoring and each metric set side by side: the default suite (MIND's four) and the full one.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402

MODELS = ("nrms", "naml", "lstur", "popularity")
ROUNDS = 3  # timed repeats of each evaluation cost, after a warm-up
METRICS = "[auc, mrr, ndcg, hit, recall, global_auc, ild, novelty, popularity, tail, coverage, gini, personalisation]"
ACCURACY = ("auc", "global_auc", "mrr", "ndcg@5", "ndcg@10", "hit@5", "recall@10")
BEYOND = ("ild_vectors@10", "novelty@10", "popularity@10", "tail@10", "coverage@10", "gini@10", "personalisation@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from once.assembly import assemble, load_data
    from once.checkpoint import load_model
    from once.evaluate import evaluation_settings, score_split
    from once.files import cache_root
    from once.measure import MetricSuite, SavedImpressions, category_fields, measure, save_impressions
    from once.recipe import load_recipe
    from once.runs import BEST, TEST_IMPRESSIONS
    from once.seeds import existing_run
    from once.significance import compare
    from once.train import train

    started = time.perf_counter()
    folder = build_benchmark(args.builder, args.users, 0, "none")
    root = cache_root() / "bench-runs" / "metrics"
    quiet = Console(stderr=True, quiet=True)
    saved, names, costs = [], [], []
    for model in MODELS:
        overrides = [f"dataset.path={folder}", f"eval.metrics={METRICS}", "seed=0"]
        if model != "popularity":
            overrides.append(f"train.epochs={args.epochs}")
        resolved = load_recipe(f"goodreads-{model}", None, overrides)
        run = existing_run(root, resolved)
        if run is None or not (run.path / TEST_IMPRESSIONS).exists():
            print(f"training {model} ...", file=sys.stderr, flush=True)
            run = train(resolved, runs_root=root, console=quiet).run
        data = load_data(resolved)
        device = torch.device("cpu")
        recommender = assemble(resolved, data, device, cache="none")
        load_model(run.path / BEST, recommender, resolved.fingerprint)
        settings = evaluation_settings(resolved, data, device)
        split = data.splits["test"]
        default = MetricSuite.build(load_recipe(f"goodreads-{model}", None, overrides[:1]), category_fields(data))
        suite = MetricSuite.build(resolved, category_fields(data))
        scoring = median_seconds(partial(score_split, recommender, split, **settings))
        four = median_seconds(partial(measure, default, recommender, data, split, settings))
        full = median_seconds(partial(measure, suite, recommender, data, split, settings))
        _, scored, values, _ = measure(suite, recommender, data, split, settings)
        save_impressions(run.path / TEST_IMPRESSIONS, split, data, scored, values)
        costs.append((model, scoring, four, full))
        saved.append(SavedImpressions.read(run.path / TEST_IMPRESSIONS))
        names.append(model)
        print(f"  {model}: scoring {scoring:.2f} s, MIND's four {four:.2f} s, all {full:.2f} s", file=sys.stderr)
    comparison = compare(suite, saved, names, args.resamples, seed=0)
    report = tables(comparison, names, costs, args, len(saved[0].impression_ids), time.perf_counter() - started)
    print(report)
    if args.write:
        write_section(args.write, "metrics", report)


def median_seconds(work, repeats: int = ROUNDS) -> float:
    """The median wall time of `repeats` calls, after one untimed call (first-call costs are not evaluation's)."""
    work()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def tables(comparison, names, costs, args, impressions: int, seconds: float) -> str:
    def cell(estimate) -> str:
        return f"{estimate.value:.4f} [{estimate.low:.4f}, {estimate.high:.4f}]"

    lines = [
        f"Test split, {impressions} impressions, 95% bootstrap intervals ({args.resamples} resamples, seed 0);"
        " each model's difference from NRMS with the paired bootstrap p-value, Holm-adjusted across the metrics"
        " of that pair (* p < 0.05 after adjustment):",
        "",
        "| metric | " + " | ".join(names) + " | " + " | ".join(f"{n} - nrms (p Holm)" for n in names[1:]) + " |",
        "|---|" + "---|" * (2 * len(names) - 1),
    ]
    for column in (*ACCURACY, *BEYOND):
        if column not in comparison.columns:
            continue
        row = [
            cell(estimates[column])
            if estimates[column].low == estimates[column].low
            else f"{estimates[column].value:.4f}"
            for estimates in comparison.estimates
        ]
        for difference in (d[column] for d in comparison.differences):
            if difference.p == difference.p:
                mark = "*" if difference.p_holm < 0.05 else ""
                row.append(f"{difference.value:+.4f} ({difference.p_holm:.3f}{mark})")
            else:
                row.append(f"{difference.value:+.4f} (n/a)")
        lines.append(f"| {column} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"Evaluation cost of the test split (one process, 2 threads; the median of {ROUNDS} timed calls after a"
        " warm-up): scoring alone, then scoring with MIND's four metrics, then scoring with all of the metrics above"
        " (the item vectors of the scoring reused for ILD):",
        "",
        "| model | scoring s | scoring + MIND's four s | scoring + all metrics s | all / four |",
        "|---|---|---|---|---|",
    ]
    for model, scoring, four, full in costs:
        ratio = full / four
        lines.append(f"| {model} | {scoring:.2f} | {four:.2f} | {full:.2f} | {ratio:.2f}x |")
    lines += ["", f"Total wall time {seconds / 60:.1f} min."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
