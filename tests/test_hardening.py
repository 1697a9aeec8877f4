"""Safe to share, safe to crash: locks, a full disk, damaged or foreign checkpoints, no pickle, disabling plugins."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import pytest
from conftest import TINY

from once.assembly import load_data
from once.checkpoint import load_model, load_tensors, save_model
from once.cli import run as cli
from once.errors import DataError, OnceError
from once.files import LOCK, building, exclusive, umask, write_atomic
from once.model import build_recommender
from once.recipe import load_recipe
from once.registry import load_registry
from once.runs import BEST, STATE
from once.train import train

ROOT = Path(__file__).parents[1]


def test_a_second_process_on_the_same_run_directory_gets_a_clear_in_use_error(tmp_path, registry):
    first = train(load_recipe("demo", registry, [*TINY, "train.epochs=1"]), runs_root=tmp_path)
    before = (first.run.path / STATE).read_bytes()
    holder = exclusive(first.run.path / LOCK, "this run directory")  # another process training into it
    with holder, pytest.raises(DataError, match="in use by another ONCE process") as error:
        train(load_recipe(first.run.path / "recipe.yaml", registry), resume=first.run.path)
    assert str(first.run.path) in error.value.where
    assert (first.run.path / STATE).read_bytes() == before  # untouched
    train(load_recipe(first.run.path / "recipe.yaml", registry), resume=first.run.path)  # free again


def test_a_full_disk_stops_with_a_clear_error_and_the_previous_checkpoint_intact(tmp_path, registry, monkeypatch):
    import once.files as files

    resolved = load_recipe("demo", registry, [*TINY, "train.patience=5"])
    real_fsync, full = files.os.fsync, []

    def fsync(fd):  # where a full disk shows itself when writes are buffered
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(DataError, match="no space left on the device") as error:
        train(resolved, runs_root=tmp_path, on_epoch_end=lambda record: full.append(True))  # full after epoch 1
    assert "Free space" in error.value.hint
    (run_dir,) = tmp_path.iterdir()
    monkeypatch.undo()
    _, metadata = load_tensors(run_dir / STATE)  # the first epoch's state, whole (its checksum is verified)
    assert metadata["trainer"]["epoch"] == 1
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert not list(run_dir.glob(".*.tmp"))
    resumed = train(load_recipe(run_dir / "recipe.yaml", registry), resume=run_dir)
    assert len(resumed.epochs) == 3


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path, registry):
    resolved = load_recipe("demo", registry, TINY)
    data = load_data(resolved)
    model = build_recommender(resolved, data)
    path = tmp_path / BEST
    save_model(path, model, resolved.fingerprint)
    load_model(path, model, resolved.fingerprint)
    other = load_recipe("demo", registry, [*TINY, "train.lr=0.5"])
    with pytest.raises(OnceError, match="trained with another recipe"):
        load_model(path, model, other.fingerprint)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # one flipped bit in the last tensor's bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(OnceError, match="checksum"):
        load_model(path, model)
    path.write_bytes(bytes(raw[: len(raw) // 2]))  # cut short
    with pytest.raises(OnceError, match="damaged checkpoint"):
        load_model(path, model)
    bigger = build_recommender(load_recipe("demo", registry, [*TINY, "model.item.heads=4", "model.user.heads=4"]), data)
    save_model(path, bigger)
    with pytest.raises(OnceError, match="does not fit the model"):
        load_model(path, model)


def test_nothing_we_ship_unpickles_or_evaluates_code():
    pattern = re.compile(
        r"import pickle|pickle\.|torch\.load\(|yaml\.load\(|unsafe_load|(?<![.\w])(eval|exec)\(|allow_pickle=True"
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("once", "plugins", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert offenders == []


def test_plugins_can_be_disabled_for_debugging(monkeypatch, capsys):
    everything = load_registry()
    assert everything.disabled == []
    monkeypatch.setenv("ONCE_DISABLE_PLUGINS", "news, baselines")
    registry = load_registry()
    assert {name for name, _ in registry.disabled} == {"news", "baselines"}
    names = {(part.kind, part.name) for part in registry.parts()}
    assert ("tokenizer", "words") in names and ("item_encoder", "naml") not in names
    assert ("item_encoder", "popularity") not in names and ("metric", "popularity") in names
    assert cli(["plugins"], registry) == 0
    assert "disabled by ONCE_DISABLE_PLUGINS: baselines (once), news (once)" in " ".join(
        capsys.readouterr().out.split()
    )
    assert cli(["recipe", "validate", "demo-naml"], registry) == 2
    assert "unknown item encoder 'naml'" in capsys.readouterr().err
    assert all(distribution != "once" for _, distribution in load_registry(disable="third-party").disabled)


def test_damaged_tokenized_data_is_an_error_naming_the_file(tiny):
    resolved = tiny("dataset.items=300", "dataset.users=100")
    folder = load_data(resolved).folder
    labels = folder / "dev" / "labels.values.npy"
    labels.write_bytes(labels.read_bytes()[:-40])  # cut short by a failing disk
    with pytest.raises(DataError, match="damaged array file") as error:
        load_data(resolved)
    assert error.value.where == str(labels)
    assert str(folder) in error.value.hint


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_follow_the_umask_as_open_would(tmp_path, mask):
    previous = os.umask(mask)
    try:
        assert umask() == mask
        write_atomic(tmp_path / "predictions.txt", "1 [1,2]\n")
        with building(tmp_path / "folder") as folder:
            (folder / "inside").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "predictions.txt").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o777 & ~mask
