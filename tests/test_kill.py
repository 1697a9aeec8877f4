"""Killed at any moment: `once train` and `once cache` die by SIGKILL at chosen points (tests/killpoint.py),
run again, and end exactly where an uninterrupted run ends, with no half-written file in their output.
(`once genre` is killed mid-run in tests/test_genre.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, TINY_DIRE, tiny_lm

from once.assembly import load_data
from once.model import build_recommender
from once.recipe import load_recipe
from once.states import build_cache

KILLPOINT = Path(__file__).parent / "killpoint.py"
TRAIN = ["train", "demo", *(f"--set={o}" for o in [*TINY, "train.patience=5"])]
STEPS_PER_EPOCH = 66  # the tiny demo's 2,094 training clicks / batch 32, rounded up (checked below)


def once(args: list[str], cache: Path, cwd: Path, kill: tuple[str, int, str] | None = None) -> int:
    """Run ONCE in a fresh process (one thread: bit-for-bit reproducible); with `kill`, die at that point."""
    command = [sys.executable, str(KILLPOINT), *map(str, kill), "--"] if kill else [sys.executable, "-m", "once"]
    env = {**os.environ, "ONCE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if kill is None:
        assert done.returncode == 0, done.stderr[-3000:]
    return done.returncode


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("whole")
    once([*TRAIN, "--out", "runs"], folder / "cache", folder)
    (run_dir,) = (folder / "runs").iterdir()
    return json.loads((run_dir / "test_metrics.json").read_text())


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], "a half-written file was left behind"


@pytest.mark.parametrize(
    ("point", "kill"),
    [
        pytest.param("while tokenizing", ("once.data.prepare:_token_matrix", 1, ""), marks=pytest.mark.slow),
        ("in the middle of the second epoch", ("once.train:Trainer.step", STEPS_PER_EPOCH + 5, "")),
        ("while writing the second epoch's training state", ("os:replace", 2, "state.safetensors")),
        pytest.param(
            "while writing the first best checkpoint",
            ("os:replace", 1, "best.safetensors"),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_killed_training_resumes_to_the_uninterrupted_result(point, kill, uninterrupted, tmp_path):
    cache = tmp_path / "cache"
    assert once([*TRAIN, "--out", "runs"], cache, tmp_path, kill) == -signal.SIGKILL, point
    runs = list((tmp_path / "runs").glob("demo-*")) if (tmp_path / "runs").exists() else []
    if runs:  # killed after the run directory was made: resume it
        (run_dir,) = runs
        once(["train", "--resume", str(run_dir)], cache, tmp_path)
    else:  # killed before (tokenizing): start again; the tokenized data was never published half-built
        assert not [p for p in (cache / "tokenized").iterdir() if not p.name.startswith(".")]
        once([*TRAIN, "--out", "runs"], cache, tmp_path)
        (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "test_metrics.json").read_text()) == uninterrupted, point
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    no_temporaries(run_dir)


def test_the_tiny_demo_has_the_steps_per_epoch_the_kill_points_assume(tiny):
    train = load_data(tiny()).splits["train"]
    clicks = int((train.labels.values == 1).sum())
    assert -(-clicks // 32) == STEPS_PER_EPOCH


def test_a_cache_killed_mid_shard_resumes_to_identical_shards(registry, tmp_path):
    model_dir = tiny_lm("llama", tmp_path / "llama")
    overrides = [*TINY_DIRE, "eval.batch_size=16", f"tokenizer.path={model_dir}"]
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    args = ["cache", "demo-llama", *(f"--set={o}" for o in [*overrides, f"model.item.cache_dir={killed_dir}"])]
    args.append("--shard-items=50")
    # call 1 probes the layout, then 4 batches per shard: call 12 is the 3rd batch of the 3rd shard
    kill = ("once_plugins.lm.dire:LmItemEncoder.frozen_states", 12, "")
    assert once(args, tmp_path / "cache", tmp_path, kill) == -signal.SIGKILL
    assert len(list(killed_dir.glob("states-*.npy"))) == 2  # two complete shards, the third one half-written
    assert len(list(killed_dir.glob(".*.tmp"))) == 1
    once(args, tmp_path / "cache", tmp_path)
    resolved = load_recipe("demo-llama", registry, [*overrides, f"model.item.cache_dir={whole_dir}"])
    data = load_data(resolved)
    build_cache(build_recommender(resolved, data), data, batch_size=16, device="cpu", shard_items=50)
    shards = sorted(p.name for p in whole_dir.glob("states-*.npy"))
    assert sorted(p.name for p in killed_dir.glob("states-*.npy")) == shards and len(shards) == 7
    for name in shards:
        assert (killed_dir / name).read_bytes() == (whole_dir / name).read_bytes(), name
    no_temporaries(killed_dir)
