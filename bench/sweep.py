"""A 20-trial `once sweep` of NRMS on Goodreads-MIND (lr, dropout, heads, negatives) against the built-in recipe.

    python bench/sweep.py [--trials 20] [--pruner median] [--write docs/benchmarks.md]

The study lives in the ONCE cache (bench-runs/sweep): rerun the command to resume it. The built-in goodreads-nrms
run is trained (seed 0, 3 epochs) unless the cache has it. The best trial is chosen on dev; its test AUC is then
compared with the built-in's on the same test impressions (paired bootstrap, 1,000 resamples).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goodreads import DEFAULT_BUILDER, build_benchmark, write_section  # noqa: E402

SPACE = """\
train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
model.item.dropout: {type: float, low: 0.0, high: 0.4}
model.item.heads: {type: categorical, choices: [8, 16, 32]}
train.negatives: {type: int, low: 2, high: 8, step: 2}
"""


def values(params: dict) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--builder", type=Path, default=DEFAULT_BUILDER)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    from rich.console import Console

    from once.files import cache_root
    from once.measure import MetricSuite, SavedImpressions
    from once.recipe import load_recipe
    from once.registry import load_registry
    from once.runs import TEST_IMPRESSIONS, Run
    from once.seeds import existing_run
    from once.significance import compare
    from once.sweep import run_sweep, trials_table_rows
    from once.train import train

    started = time.perf_counter()
    folder = build_benchmark(args.builder, 5000, 0, "none")
    overrides = [f"dataset.path={folder}"]
    registry = load_registry()
    builtin = load_recipe("goodreads-nrms", registry, overrides)
    root = cache_root() / "bench-runs" / "sweep"
    baseline = existing_run(root / "builtin", builtin)
    if baseline is None or not (baseline.path / TEST_IMPRESSIONS).exists():
        print("training the built-in recipe ...", file=sys.stderr, flush=True)
        baseline = train(builtin, runs_root=root / "builtin", console=Console(stderr=True, quiet=True)).run
    space = root / "space.yaml"
    root.mkdir(parents=True, exist_ok=True)
    space.write_text(SPACE)
    result = run_sweep(
        "goodreads-nrms", space, args.trials, root / "study", registry, overrides=overrides, pruner=args.pruner
    )
    seconds = time.perf_counter() - started
    study = result.study
    best = study.best_trial
    states = [t.state.name for t in study.trials]
    best_run = Run(Path(best.user_attrs["run"]))
    suite = MetricSuite.build(builtin, ())
    runs = [SavedImpressions.read(r.path / TEST_IMPRESSIONS) for r in (baseline, best_run)]
    comparison = compare(suite, runs, ["built-in", "best trial"], 1000, seed=0)
    base_dev = max(e["dev"]["auc"] for e in baseline.epochs())
    auc = [comparison.estimates[i]["auc"] for i in range(2)]
    difference = comparison.differences[0]["auc"]
    lines = [
        f"{len(study.trials)} trials ({states.count('COMPLETE')} completed, {states.count('PRUNED')} pruned by the "
        f"{args.pruner} pruner, {states.count('FAIL')} failed), TPE, space:",
        "",
        "```yaml",
        SPACE.rstrip(),
        "```",
        "",
        "| | dev AUC (best epoch) | test AUC [95% interval] |",
        "|---|---|---|",
        f"| built-in goodreads-nrms | {base_dev:.4f} | {auc[0].value:.4f} [{auc[0].low:.4f}, {auc[0].high:.4f}] |",
        f"| best trial ({best.number}) | {best.value:.4f} | {auc[1].value:.4f} [{auc[1].low:.4f}, {auc[1].high:.4f}] |",
        "",
        f"Best trial's values: {values(best.params)}. "
        f"Test AUC difference {difference.value:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}], paired "
        f"bootstrap p = {difference.p:.3f}.",
        "",
    ]
    header, rows = trials_table_rows(study)
    header[header.index("value")] = "dev AUC"
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        f"Command: `python bench/sweep.py --trials {args.trials} --pruner {args.pruner}` "
        f"({seconds / 60:.1f} min wall, this invocation; {result.ran} trial(s) run by it)",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "sweep", report)


if __name__ == "__main__":
    main()
