"""Trackers: TensorBoard, MLflow, W&B (offline) and JSON lines, read back with each library's own reader."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from conftest import TINY

from once.api import Options, RecipeError, hookimpl
from once.cli import run as cli
from once.recipe import load_recipe
from once.registry import load_registry
from once.tracking import Tracking
from once.train import train

TRACKED = (
    "track=[{name: tensorboard, every: 1}, {name: mlflow, every: 1}, {name: wandb, every: 1}, {name: jsonl, every: 1}]"
)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, registry):
    resolved = load_recipe("demo", registry, [*TINY, "train.epochs=2", TRACKED])
    return train(resolved, runs_root=tmp_path_factory.mktemp("runs"))


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "track.jsonl").read_text().splitlines()]


def wandb_records(path: Path):
    """The protobuf records of a W&B run file (a LevelDB-style log of 32 KiB blocks after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data, position, parts = path.read_bytes(), 7, b""
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        if room < 7:  # a block's tail too short for a record header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        parts += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record
        elif kind == 0:
            break


def test_every_tracker_holds_what_the_run_logged(tracked):
    run_dir = tracked.run.path
    logged = events(run_dir)
    assert [e["event"] for e in logged[:2]] == ["start", "step"] and logged[-1]["event"] == "finish"
    assert logged[0]["fingerprint"] == json.loads((run_dir / "run.json").read_text())["fingerprint"]
    steps = {e["step"]: e["values"] for e in logged if e["event"] == "step"}
    assert len(steps) > 10 and all({"loss", "lr", "samples_per_s"} <= set(v) for v in steps.values())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert logged[-1]["test"] == test

    # TensorBoard, through tensorboard's own event reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    loss = {e.step: e.value for e in board.Scalars("train/loss")}
    assert loss.keys() == steps.keys()
    assert all(loss[s] == pytest.approx(steps[s]["loss"], rel=1e-6) for s in steps)
    dev_auc = [e.value for e in board.Scalars("dev/auc")]
    assert dev_auc == pytest.approx([e["dev"]["auc"] for e in epochs], rel=1e-6)
    assert board.Scalars("test/auc")[0].value == pytest.approx(test["auc"], rel=1e-6)

    # MLflow, through its client on the SQLite store beside the run
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["once.run"] == run_dir.name
    assert found.data.params["model.item.name"] == "nrms" and found.data.params["train.epochs"] == "2"
    assert found.data.metrics["test/auc"] == pytest.approx(test["auc"])
    history = client.get_metric_history(found.info.run_id, "dev/auc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([e["dev"]["auc"] for e in epochs])
    mlflow_loss = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "train/loss")}
    assert mlflow_loss == pytest.approx({s: v["loss"] for s, v in steps.items()})
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"recipe.yaml", "run.json", "test_metrics.json"} <= artifacts

    # W&B offline: the run file's history and summary records
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary = [], {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    wandb_loss = {row["_step"]: row["train/loss"] for row in history if "train/loss" in row}
    assert wandb_loss == pytest.approx({s: v["loss"] for s, v in steps.items()})
    assert [row["dev/auc"] for row in history if "dev/auc" in row] == pytest.approx([e["dev"]["auc"] for e in epochs])
    assert summary["test/auc"] == pytest.approx(test["auc"])


def test_a_missing_tracker_package_is_a_recipe_error_before_the_run_directory(monkeypatch, registry, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "once_plugins.trackers.mlflow", raising=False)
    resolved = load_recipe("demo", registry, [*TINY, "train.epochs=1", "track=[mlflow]"])
    with pytest.raises(RecipeError) as error:
        train(resolved, runs_root=tmp_path / "runs")
    assert 'pip install "once[mlflow]"' in error.value.hint and error.value.where == "track"
    assert not (tmp_path / "runs").exists()


class Failing:
    """A lab's own tracker that breaks at its third step (its server went away)."""

    every = 1

    def __init__(self, options, context) -> None:
        self.steps: list[int] = []
        self.closed = False
        FAILING.append(self)

    def step(self, step, values):
        self.steps.append(step)
        if len(self.steps) == 3:
            raise ConnectionError("tracking server went away")

    def epoch(self, epoch, values):
        raise AssertionError("a tracker that failed is not called again")

    def finish(self, test, groups, artifacts):
        raise AssertionError("a tracker that failed is not called again")

    def close(self):
        self.closed = True


FAILING: list[Failing] = []


def test_a_failing_tracker_is_reported_once_and_training_goes_on(tmp_path, caplog):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_trackers(register):
            register("flaky", Failing, Options)

    registry = load_registry(plugins=[Plugin()])
    resolved = load_recipe("demo", registry, [*TINY, "train.epochs=2", "track=[flaky, jsonl]"])
    result = train(resolved, runs_root=tmp_path / "runs")
    (failing,) = FAILING
    assert len(failing.steps) == 3 and failing.closed
    warnings = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert len(warnings) == 1 and "tracking server went away" in warnings[0]
    assert result.test is not None and len(result.epochs) == 2  # training finished
    assert events(result.run.path)[-1]["event"] == "finish"  # the other tracker went on


def test_track_on_the_command_line_and_rank_0_only(registry, tmp_path):
    overrides = [f"--set={o}" for o in [*TINY, "train.epochs=1"]]
    assert cli(["train", *overrides, "--track", "jsonl", "--out", str(tmp_path / "runs")], registry) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert events(run_dir)[-1]["event"] == "finish"
    recipe = (run_dir / "recipe.yaml").read_text()
    assert "jsonl" in recipe  # kept with the run, outside the fingerprint
    resolved = load_recipe("demo", registry, [*TINY, "track=[jsonl]"])
    assert resolved.fingerprint == load_recipe("demo", registry, TINY).fingerprint
    assert Tracking.start(resolved, run_dir, {}, main=False).trackers == []
    with pytest.raises(RecipeError, match="track\\[0\\]"):
        load_recipe("demo", registry, [*TINY, "track=[no-such-tracker]"])
