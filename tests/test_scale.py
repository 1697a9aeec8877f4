"""Speed and scale: torchrun with the gloo backend on CPU matches one process; the fast paths match the plain ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_DIRE, tiny_lm

from once.assembly import load_data
from once.data.sampling import prefetched
from once.evaluate import evaluate, score_split
from once.model import build_recommender
from once.recipe import load_recipe
from once.states import build_cache
from once.train import train
from once_plugins.datasets.parts import DemoOptions

DDP = [*TINY, "model.item.dropout=0", "train.epochs=3", "train.patience=5"]


def torchrun(*args: str, cwd: Path, check: bool = True, script: Path | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m once ARGS` (or `SCRIPT ARGS`): two CPU processes joined by gloo."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    target = [str(script)] if script else ["-m", "once"]
    done = subprocess.run(
        [*command, *target, *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


SPARSE_LOOKUPS_UNDER_DDP = """
import sys, torch
from once.nn import WordEmbedding
torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank()
torch.manual_seed(0)
embedding = WordEmbedding(50, 6, padding_idx=0)
reference = torch.nn.Embedding(50, 6, padding_idx=0)
reference.weight.data.copy_(embedding.weight.data)
lookups = [[torch.randint(0, 50, shape) for shape in [(3, 4), (5, 2), (1, 7)]] for _ in range(2)]  # per rank
parallel = torch.nn.parallel.DistributedDataParallel(embedding)
sum((parallel(look) * torch.arange(6.0)).tanh().sum() for look in lookups[rank]).backward()
for mine in lookups:  # both ranks' dense gradients, averaged as DDP averages
    sum((reference(look) * torch.arange(6.0)).tanh().sum() / 2 for look in mine).backward()
assert embedding.weight.grad.layout == torch.strided, embedding.weight.grad.layout
torch.testing.assert_close(embedding.weight.grad, reference.weight.grad)
torch.distributed.barrier()  # no rank exits while the other still talks; as the engine, no destroy
sys.stdout.write(f"rank {rank} dense and equal\\n")  # one write: the two ranks share the pipe
"""


def test_sparse_word_lookups_reach_ddp_as_the_averaged_dense_gradient(tmp_path):
    """once.nn.WordEmbedding's densifying hook runs before DDP's reducer reads the gradient: two gloo processes with
    different sparse lookups end with the average of their dense gradients."""
    script = tmp_path / "sparse_ddp.py"
    script.write_text(SPARSE_LOOKUPS_UNDER_DDP)
    done = torchrun(cwd=tmp_path, script=script)
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("rank")) == [
        "rank 0 dense and equal",
        "rank 1 dense and equal",
    ]


def kill_processes_mentioning(text: str) -> set[int]:
    """SIGKILL every process whose command line contains `text`; their pids."""
    killed = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.add(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return killed


def sets(overrides: list[str]) -> list[str]:
    return [f"--set={o}" for o in overrides]


def epochs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory) -> Path:
    """The demo trained by two processes (global batch 32: 16 per rank)."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun("train", "demo", *sets(DDP), "--out", str(out / "runs"), cwd=out)
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def test_two_gloo_processes_reach_the_metrics_of_one_process(distributed_run, registry, tmp_path):
    single = train(load_recipe("demo", registry, DDP), runs_root=tmp_path)
    multi = epochs(distributed_run)
    assert len(multi) == len(single.epochs) == 3
    # the same global batches and gradients: the first epoch's loss agrees to float rounding; Adam then lets the
    # rounding differences of two summation orders grow a little
    assert multi[0]["train_loss"] == pytest.approx(single.epochs[0]["train_loss"], abs=1e-4)
    for ours, theirs in zip(multi, single.epochs, strict=True):
        assert ours["dev"]["auc"] == pytest.approx(theirs["dev"]["auc"], abs=5e-3)
    test = json.loads((distributed_run / "test_metrics.json").read_text())
    assert test["auc"] == pytest.approx(single.test["auc"], abs=5e-3)
    assert test["auc"] > 0.7  # and both learned
    # rank 0 wrote one run directory, with everything a single-process run has
    assert {p.name for p in distributed_run.parent.iterdir()} == {distributed_run.name}
    assert {p.name for p in distributed_run.iterdir()} == {p.name for p in single.run.path.iterdir()}


def first_epochs(registry, tmp_path: Path, overrides: list[str], recipe: str = "demo") -> tuple[dict, dict]:
    """The first epoch's record of a recipe under 2 gloo processes and in one process, same overrides."""
    torchrun("train", recipe, *sets(overrides), "--out", str(tmp_path / "ddp"), cwd=tmp_path)
    (run_dir,) = (tmp_path / "ddp").iterdir()
    single = train(load_recipe(recipe, registry, overrides), runs_root=tmp_path / "single").epochs
    return epochs(run_dir)[0], single[0]


def test_at_the_demos_full_size_two_processes_match_one_without_dropout(registry, tmp_path):
    """Same batches, negatives and initial weights whatever the world size: with dropout off (each rank draws its
    own masks) a torchrun run of the full demo agrees with one process to float rounding."""
    overrides = ["train.epochs=1", "model.item.dropout=0", "threads=1", "device=cpu"]
    multi, single = first_epochs(registry, tmp_path, overrides)
    assert multi["train_loss"] == pytest.approx(single["train_loss"], abs=1e-4)  # measured: 3e-6 apart
    for metric, value in single["dev"].items():
        assert multi["dev"][metric] == pytest.approx(value, abs=2e-3), metric  # measured: AUC 6e-5 apart


def test_a_multi_interest_model_under_two_processes_matches_one(registry, tmp_path):
    """MINER: K vectors per user and an auxiliary term, the same under DDP as in one process (dropout off)."""
    overrides = [*TINY, "model.user={name: miner, interests: 4, code_dim: 16}", "model.predictor={name: miner}"]
    # lr 0.005: at the tiny recipe's 0.02 with the 0.8-weighted term, float rounding (2 ranks sum in another
    # order) grows into 3e-4 of loss within an epoch; at 0.4 or 0.08 weight it stays under 1e-5 (measured)
    overrides += ["model.item.dropout=0", "train.epochs=1", "threads=1", "train.lr=0.005"]
    multi, single = first_epochs(registry, tmp_path, overrides)
    assert multi["train_loss"] == pytest.approx(single["train_loss"], abs=1e-4)
    assert multi["train_terms"]["disagreement"] == pytest.approx(single["train_terms"]["disagreement"], abs=1e-4)
    assert multi["dev"]["auc"] == pytest.approx(single["dev"]["auc"], abs=2e-3)


def test_a_part_whose_parameters_only_an_auxiliary_loss_uses_trains_under_two_processes(registry, tmp_path):
    """TANR's topic classifier feeds only its loss term: DDP must see it used (it once failed with 'Expected to
    mark a variable ready only once'). Its term averages over each rank's distinct items, so the two runs agree
    closely but not to rounding."""
    overrides = [o for o in TINY if not o.startswith("model.")]
    overrides += ["model.item.word_dim=32", "model.item.filters=32", "model.item.query_dim=16", "model.item.dropout=0"]
    overrides += ["model.user.query_dim=16", "train.epochs=1", "threads=1", "train.lr=0.005"]
    multi, single = first_epochs(registry, tmp_path, overrides, recipe="demo-tanr")
    assert multi["train_terms"]["topic"] > 0
    assert multi["train_loss"] == pytest.approx(single["train_loss"], abs=5e-3)
    assert multi["train_terms"]["topic"] == pytest.approx(single["train_terms"]["topic"], rel=0.05)


def test_a_candidate_aware_model_under_two_processes_matches_one(registry, tmp_path):
    """CAUM: one user vector per candidate, the same under DDP as in one process (dropout off)."""
    overrides = [*TINY, "model.user={name: caum, heads: 2, attention_dim: 16, dropout: 0}", "model.item.dropout=0"]
    overrides += ["train.epochs=1", "threads=1", "train.lr=0.005"]
    multi, single = first_epochs(registry, tmp_path, overrides)
    assert multi["train_loss"] == pytest.approx(single["train_loss"], abs=1e-4)
    assert multi["dev"]["auc"] == pytest.approx(single["dev"]["auc"], abs=2e-3)


def test_a_killed_distributed_run_resumes_to_the_same_result(distributed_run, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "once"]
    process = subprocess.Popen(
        [*command, "train", "demo", *sets(DDP), "--out", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("demo-*/state.safetensors")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # every process of the run dies at once, after the first epoch's checkpoint: torchrun and its workers (which
    # it starts in sessions of their own)
    while kill_processes_mentioning(str(tmp_path)):
        time.sleep(0.05)
    process.wait()
    (run_dir,) = tmp_path.glob("demo-*")
    assert len(epochs(run_dir)) < 3
    torchrun("train", "--resume", str(run_dir), cwd=tmp_path)
    resumed, whole = epochs(run_dir), epochs(distributed_run)
    assert len(resumed) == len(whole) == 3
    for ours, theirs in zip(resumed, whole, strict=True):
        assert ours["dev"] == pytest.approx(theirs["dev"], abs=1e-6)
    expected = json.loads((distributed_run / "test_metrics.json").read_text())
    assert json.loads((run_dir / "test_metrics.json").read_text()) == pytest.approx(expected, abs=1e-6)


def test_lora_training_and_the_cache_split_across_ranks(registry, tmp_path):
    model_dir = tiny_lm("llama", tmp_path / "llama")
    overrides = [*TINY_DIRE, "model.item.lora.dropout=0", f"tokenizer.path={model_dir}"]
    split_dir, whole_dir = tmp_path / "split-cache", tmp_path / "whole-cache"
    torchrun(
        "cache",
        "demo-llama",
        *sets([*overrides, f"model.item.cache_dir={split_dir}"]),
        "--shard-items=50",
        cwd=tmp_path,
    )
    resolved = load_recipe("demo-llama", registry, [*overrides, f"model.item.cache_dir={whole_dir}"])
    data = load_data(resolved)
    build_cache(build_recommender(resolved, data), data, batch_size=32, device=torch.device("cpu"), shard_items=50)
    shards = sorted(p.name for p in split_dir.glob("*.npy"))
    assert len(shards) == -(-data.num_items // 50) >= 4  # each rank wrote every other shard
    for name in shards:
        assert (split_dir / name).read_bytes() == (whole_dir / name).read_bytes(), name

    # LoRA on the cached states under DDP: the same first-epoch loss as one process
    torchrun("train", "demo-llama", *sets([*overrides, f"model.item.cache_dir={split_dir}"]), "--out=ddp", cwd=tmp_path)
    (run_dir,) = (tmp_path / "ddp").iterdir()
    single = train(resolved, runs_root=tmp_path / "single")
    assert epochs(run_dir)[0]["train_loss"] == pytest.approx(single.epochs[0]["train_loss"], abs=1e-4)
    assert epochs(run_dir)[0]["dev"]["auc"] == pytest.approx(single.epochs[0]["dev"]["auc"], abs=5e-3)


def test_unique_item_encoding_and_trimmed_batches_give_the_scores_of_every_occurrence(tiny):
    resolved = tiny("model.item.dropout=0")
    data = load_data(resolved)
    model = build_recommender(resolved, data).eval()
    split = data.splits["dev"]
    history = torch.from_numpy(split.history.all_padded(20))
    wide = torch.nn.functional.pad(history, (0, 30))  # padded to max_history and beyond, as fixed-size inputs are
    candidates = torch.from_numpy(split.candidates.padded(np.arange(len(split)), 15))
    users = torch.tensor(split.user_ids)
    with torch.no_grad():
        unique = model(history, candidates, users)
        model.unique_items = False
        every = model(wide, candidates, users)
    torch.testing.assert_close(unique, every, rtol=1e-5, atol=1e-5)


def record_item_encoder_calls(model: torch.nn.Module) -> list[tuple[bool, bool, torch.dtype, torch.dtype]]:
    """Each later call of the model's item encoder, as (grad enabled, CPU autocast enabled, CPU autocast dtype,
    output dtype): what shows whether `precision: bf16` reached the forward passes."""
    calls: list[tuple[bool, bool, torch.dtype, torch.dtype]] = []

    def hook(module, args, output):
        state = torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
        calls.append((*state, output.dtype))

    model.item_encoder.register_forward_hook(hook)
    return calls


def test_bf16_scoring_is_close_to_fp32(tiny):
    resolved = tiny()
    data = load_data(resolved)
    model = build_recommender(resolved, data)
    calls = record_item_encoder_calls(model)
    kwargs = {"num_items": data.num_items, "max_history": 20, "batch_size": 64, "device": torch.device("cpu")}
    split = data.splits["dev"]
    full = score_split(model, split, **kwargs)
    assert calls and all(not call[1] and call[3] == torch.float32 for call in calls)  # plain fp32
    calls.clear()
    half = score_split(model, split, precision="bf16", **kwargs)
    assert calls and all(call[1:] == (True, torch.bfloat16, torch.bfloat16) for call in calls)  # bf16 applied
    assert max(np.abs(a - b).max() for a, b in zip(full, half, strict=True)) < 0.05
    assert any(not np.array_equal(a, b) for a, b in zip(full, half, strict=True))  # rounded, so not the same
    assert evaluate(model, split, precision="bf16", **kwargs)["auc"] == pytest.approx(
        evaluate(model, split, **kwargs)["auc"], abs=0.01
    )


def test_bf16_training_runs_from_the_recipe(tiny, tmp_path, monkeypatch):
    from once.model import Recommender

    calls: list[tuple[bool, bool, torch.dtype, torch.dtype]] = []
    encode_items = Recommender.encode_items

    def encode_and_record(self, items, users=None):  # the real encoding, with the state it ran under recorded
        vectors = encode_items(self, items, users)
        state = torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
        calls.append((*state, vectors.dtype))
        return vectors

    monkeypatch.setattr(Recommender, "encode_items", encode_and_record)
    result = train(tiny("precision=bf16", "train.epochs=1"), runs_root=tmp_path)
    assert result.test["auc"] > 0.55
    training = [call for call in calls if call[0]]
    assert training and all(call[1:] == (True, torch.bfloat16, torch.bfloat16) for call in training)
    assert all(call[1:] == (True, torch.bfloat16, torch.bfloat16) for call in calls)  # scoring too


def test_prepared_splits_are_memory_mapped(tiny):
    split = load_data(tiny()).splits["train"]
    for array in (split.user_ids, split.history.values, split.candidates.offsets, split.labels.values):
        assert isinstance(array, np.memmap) and not array.flags.writeable


def test_prefetching_keeps_order_raises_errors_and_stops_when_closed():
    assert list(prefetched(iter(range(100)), 3)) == list(range(100))
    assert list(prefetched(iter(range(5)), 0)) == list(range(5))

    def failing():
        yield 1
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        list(prefetched(failing(), 2))
    produced = []

    def endless():
        for i in range(10**9):
            produced.append(i)
            yield i

    before = threading.active_count()
    ahead = prefetched(endless(), 2)
    assert next(ahead) == 0
    ahead.close()
    assert threading.active_count() == before
    assert len(produced) < 10  # the thread stopped a few batches ahead


def test_the_mind_small_preset_and_explicit_options():
    preset = DemoOptions(size="mind-small")
    assert (preset.items, preset.users, preset.impressions, preset.candidates) == (65_238, 50_000, 3, 37)
    assert DemoOptions(size="mind-small", users=10).users == 10  # explicit options win
    assert DemoOptions().items == 3000
