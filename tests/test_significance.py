"""Bootstrap intervals and paired tests between runs (`once compare`), and the per-impression file they read."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from once.cli import run as cli
from once.errors import OnceError
from once.measure import MetricSuite, SavedImpressions
from once.protocols import ScoredSplit
from once.recipe import load_recipe
from once.runs import TEST_IMPRESSIONS
from once.significance import compare, holm


def saved(values: dict[str, np.ndarray], ids=None) -> SavedImpressions:
    n = len(next(iter(values.values())))
    ids = np.array([f"I{i}" for i in range(n)]) if ids is None else ids
    candidates = [np.array(["N1", "N2"])] * n
    empty = ScoredSplit([], [], [], [], np.zeros(3, np.int64), {})
    return SavedImpressions(None, ids, candidates, empty, np.zeros(n, np.int64), values, ())


def test_holm_adjusts_step_down():
    # sorted 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_intervals_hold_the_true_difference_about_95_percent_of_the_time(registry):
    """300 synthetic pairs of runs whose per-impression AUCs differ by a known 0.02 on average: the 95% interval of
    the difference must hold 0.02 in about 95% of them. With 300 draws the share's standard error is 1.3%, so
    0.91-0.99 (three standard errors) fails a broken interval and passes a right one."""
    suite = MetricSuite.build(load_recipe("demo", registry, ["eval.metrics=[auc]"]), ())
    rng = np.random.default_rng(7)
    held, p_small = 0, 0
    for _ in range(300):
        base = rng.beta(4, 2, size=200)  # per-impression AUCs of the baseline
        other = base + 0.02 + rng.normal(0, 0.08, size=200)  # the population's mean difference: 0.02
        result = compare(suite, [saved({"auc": base}), saved({"auc": other})], ["a", "b"], resamples=400, seed=1)
        difference = result.differences[0]["auc"]
        held += difference.low <= 0.02 <= difference.high
        p_small += difference.p < 0.05
    assert 0.91 <= held / 300 <= 0.99
    assert p_small / 300 > 0.8  # 0.02 over 200 impressions with this noise is usually detected


def test_a_run_against_itself_differs_by_nothing(registry):
    suite = MetricSuite.build(load_recipe("demo", registry, ["eval.metrics=[auc, mrr]"]), ())
    values = {"auc": np.linspace(0.2, 0.9, 50), "mrr": np.linspace(0.1, 1, 50)}
    result = compare(suite, [saved(values), saved(values)], ["a", "b"], resamples=200)
    assert all(d.value == 0 and d.low == 0 and d.high == 0 and d.p == 1 for d in result.differences[0].values())
    estimate = result.estimates[0]["auc"]
    assert estimate.low < estimate.value < estimate.high


def test_runs_on_other_impressions_are_not_paired(registry):
    suite = MetricSuite.build(load_recipe("demo", registry, ["eval.metrics=[auc]"]), ())
    a = saved({"auc": np.ones(4)})
    with pytest.raises(OnceError, match="tested on 3 impressions and a on 4"):
        compare(suite, [a, saved({"auc": np.ones(3)})], ["a", "b"])
    other = saved({"auc": np.ones(4)}, ids=np.array(["I0", "I1", "X", "I3"]))
    with pytest.raises(OnceError, match="other impressions .1 differ; the first: row 2, 'X'"):
        compare(suite, [a, other], ["a", "b"])


def test_compare_reads_two_runs_and_writes_tables_for_a_paper(tmp_path, registry, capsys):
    metrics = "eval.metrics=[auc, mrr, ndcg, coverage]"
    for seed in (0, 1):
        args = [f"--set={o}" for o in [*TINY, "train.epochs=1", f"seed={seed}", metrics]]
        assert cli(["train", "demo", *args, "--out", str(tmp_path / "runs")]) == 0
    first, second = sorted((tmp_path / "runs").iterdir())
    # the per-impression file gives back the run's test metrics
    stored = SavedImpressions.read(first / TEST_IMPRESSIONS)
    test = json.loads((first / "test_metrics.json").read_text())
    suite = MetricSuite.build(load_recipe("demo", registry, [metrics]), stored.categories)
    assert {c: v for c, v in suite.summary(stored.scored, values=stored.values).items()} == pytest.approx(test)
    capsys.readouterr()
    for form in ("markdown", "latex", "csv"):
        out = tmp_path / f"table.{form}"
        args = ["compare", str(first), str(second), "--format", form, "--out", str(out), "--resamples", "200"]
        assert cli([*args, "--png", str(tmp_path / "c.png"), "--groups-png", str(tmp_path / "g.png")]) == 0
    markdown = (tmp_path / "table.markdown").read_text().splitlines()
    assert markdown[0].startswith("| metric |") and len(markdown) == 2 + 6  # ..., coverage@5, @10
    auc_row = next(line for line in markdown if line.startswith("| auc |"))
    assert f"{test['auc']:.4f} [" in auc_row
    assert "| n/a | n/a |" in next(line for line in markdown if line.startswith("| coverage@5 |"))
    assert r"\begin{tabular}" in (tmp_path / "table.latex").read_text()
    assert (tmp_path / "table.csv").read_text().startswith("metric,")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_seeds_train_each_seed_once_and_resume_the_unfinished(tmp_path, capsys):
    args = [f"--set={o}" for o in [*TINY, "train.epochs=1"]]
    runs = tmp_path / "runs"
    assert cli(["train", "demo", *args, "--seeds", "0,1", "--out", str(runs)]) == 0
    (summary_file,) = runs.glob("demo-seeds-0-1.json")
    summary = json.loads(summary_file.read_text())
    aucs = [r["test"]["auc"] for r in summary["runs"]]
    assert len(set(aucs)) == 2  # two seeds, two runs
    assert summary["test"]["auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert summary["test"]["auc"]["std"] == pytest.approx(np.std(aucs, ddof=1))
    second = Path(summary["runs"][1]["run"])
    (second / "test_metrics.json").unlink()  # as if seed 1 had stopped before its test
    capsys.readouterr()
    assert cli(["train", "demo", *args, "--seeds", "0,1", "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "seed 0 (reused)" in out and "seed 1 (resumed)" in out
    assert len([p for p in runs.iterdir() if p.is_dir()]) == 2  # no new run directory
    again = json.loads(summary_file.read_text())
    assert [r["test"]["auc"] for r in again["runs"]] == aucs  # the resumed seed tests the same weights


def test_bad_seeds_are_named(capsys):
    assert cli(["train", "demo", "--seeds", "0,x"]) != 0
    assert "--seeds takes whole numbers" in capsys.readouterr().err
