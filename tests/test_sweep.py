"""`once sweep`: Optuna over recipe keys on the demo corpus at test size, with a real SQLite study."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY

from once import sweep
from once.errors import OnceError, RecipeError
from once.recipe import load_recipe
from once.runs import Run
from once.sweep import run_sweep

SETTINGS = [*TINY, "train.epochs=2"]
SPACE = """\
train.lr: {type: float, low: 1.0e-4, high: 5.0e-2, log: true}
train.negatives: {type: categorical, choices: [1, 4]}
"""


def space_file(folder: Path, text: str = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


def complete_trials(database: Path) -> int:
    """The study's completed trials, read without writing: Optuna's own loader creates the tables it finds
    missing, which would race the sweep creating them."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # no file or no tables yet, or the sweep writing for longer than a second
        return 0


@contextlib.contextmanager
def locked(database: Path, seconds: float):
    """The SQLite file held under an exclusive lock for `seconds` by another connection, as a second worker's long
    write would hold it; the lock is taken before the block starts."""
    taken = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(database, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        taken.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    try:
        yield
    finally:
        holder.join()


def test_a_sweep_finds_a_better_recipe_and_writes_it(registry, tmp_path):
    result = run_sweep("demo", space_file(tmp_path), 4, tmp_path / "sweep", registry, overrides=SETTINGS, pruner="none")
    values = [t.value for t in result.study.trials]
    assert states(result.study) == ["COMPLETE"] * 4 and result.ran == 4
    assert max(values) > min(values)  # the best trial beats the worst
    best = result.study.best_trial
    run = Run(Path(best.user_attrs["run"]))
    assert max(e["dev"]["auc"] for e in run.epochs()) == pytest.approx(best.value)
    written = load_recipe(str(tmp_path / "sweep" / "best.yaml"), registry)  # a ready recipe file
    assert written.fingerprint == run.info["fingerprint"]
    assert written.recipe.train.lr == pytest.approx(best.params["train.lr"])
    assert len((tmp_path / "sweep" / "trials.csv").read_text().splitlines()) == 5
    for plot in ("history.png", "importances.png"):
        assert (tmp_path / "sweep" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_sweep("demo", space_file(tmp_path), 4, tmp_path / "sweep", registry, overrides=SETTINGS)
    assert again.ran == 0 and len(again.study.trials) == 4  # the study is complete: nothing runs again
    more = run_sweep("demo", space_file(tmp_path), 6, tmp_path / "sweep", registry, overrides=SETTINGS, pruner="none")
    first = [t.params for t in more.study.trials[:4]]
    assert more.ran == 2 and all(t.params not in first for t in more.study.trials[4:])  # new values, not replays


def test_pruning_stops_a_trial_that_is_behind(registry, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", study_name="demo", direction="maximize")
    for lr in (0.02, 0.02, 1e-7):  # the last one learns nothing in an epoch
        study.enqueue_trial({"train.lr": lr, "train.negatives": 4})
    space = "train.lr: {type: float, low: 1.0e-7, high: 5.0e-2, log: true}\n"
    space += "train.negatives: {type: categorical, choices: [1, 4]}\n"
    result = run_sweep("demo", space_file(tmp_path, space), 3, out, registry, overrides=SETTINGS, pruner="median")
    assert states(result.study) == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert result.study.trials[2].user_attrs["epochs"] == 1  # stopped after its first epoch of two


def test_a_killed_sweep_resumes_without_repeating_finished_trials(registry, tmp_path):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "once", "sweep", "demo", "--space", str(space_file(tmp_path)), "--trials", "4"]
    command += ["--out", str(out), "--pruner", "none", *(f"--set={o}" for o in SETTINGS)]
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ.copy())
    deadline = time.monotonic() + 300
    while complete_trials(out / "study.db") < 2:
        ended = process.poll() is not None
        assert not ended and time.monotonic() < deadline, f"the sweep ended before it was killed:\n{errors.read_text()}"
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    storage = f"sqlite:///{out / 'study.db'}"
    done = [t for t in optuna.load_study(study_name="demo", storage=storage).trials if t.state.name == "COMPLETE"]
    before = {t.number: (t.params, t.value) for t in done}
    result = run_sweep("demo", space_file(tmp_path), 4, out, registry, overrides=SETTINGS, pruner="none")
    complete = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and result.ran == 4 - len(before)
    for trial in result.study.trials:  # the finished trials are kept, not run again
        if trial.number in before:
            assert (trial.params, trial.value) == before[trial.number]
    # the trial killed mid-run stays running until its heartbeat is GRACE s old (then failed, its values queued
    # again): another worker could still be on it


def test_a_sweep_waits_for_a_lock_held_past_sqlites_default_wait(registry, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    with locked(out / "study.db", seconds=6):  # SQLite gives up after 5 s unless told otherwise
        result = run_sweep("demo", space_file(tmp_path), 1, out, registry, overrides=SETTINGS, pruner="none")
    assert states(result.study) == ["COMPLETE"]


def test_a_database_locked_too_long_is_an_error_naming_it(registry, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    out.mkdir()
    monkeypatch.setattr(sweep, "SQLITE_WAIT", 0.5)
    with locked(out / "study.db", seconds=5), pytest.raises(OnceError) as error:  # 10x the wait
        run_sweep("demo", space_file(tmp_path), 1, out, registry, overrides=SETTINGS, pruner="none")
    assert "database is locked" in str(error.value) and str(out / "study.db") in str(error.value)
    assert "rerun" in str(error.value)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("train.lrr: {type: float, low: 0.001, high: 0.01}\n", "train.lrr"),
        ("train.lr: {type: float, low: 0.01, high: 0.001}\n", "must be below high"),
        ("train.lr: {type: float, low: 0, high: 0.01, log: true}\n", "log range needs low > 0"),
        ("train.lr: {type: float, low: -1, high: 0.01}\n", "train.lr = -1"),
        ("train.negatives: {type: categorical}\n", "choices"),
        ("train.lr: [0.01]\n", "not a range"),
    ],
)
def test_bad_spaces_are_errors_naming_the_key(registry, tmp_path, space, message):
    path = space_file(tmp_path, "# tuning\n" + space)
    with pytest.raises(RecipeError) as error:
        run_sweep("demo", path, 2, tmp_path / "sweep", registry, overrides=SETTINGS)
    assert message in str(error.value) and f"{path}:2" in str(error.value)
    assert not (tmp_path / "sweep" / "runs").exists()  # nothing ran
