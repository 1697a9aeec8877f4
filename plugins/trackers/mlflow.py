"""The `mlflow` tracker: one MLflow run per ONCE run, in a local SQLite store by default (any tracking URI works).

Parameters: the resolved recipe, flattened to dotted keys (`model.item.name`); tags: the ONCE run, fingerprint and
versions; metrics: `train/*` per step, `dev/*` and `epoch/*` per epoch (step = epoch), `test/*` and
`groups/<group>/<metric>` at the end; artifacts: the run's result files. `mlflow ui --backend-store-uri
sqlite:///RUNS/mlflow.db` shows them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from once.api import TrackerContext
from once_plugins.trackers.extra import missing
from once_plugins.trackers.parts import MlflowOptions

try:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
except ImportError:
    raise missing("mlflow", "mlflow", "mlflow") from None

BATCH = 100  # MLflow takes at most this many params (and 1,000 metrics) per call
KEY = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in a key


def key(name: str) -> str:
    return KEY.sub("_", name)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        return {k: v for name, item in value.items() for k, v in flatten(item, f"{prefix}{name}.").items()}
    return {prefix.rstrip("."): str(value)[:6000]}


class MlflowTracker:
    def __init__(self, options: MlflowOptions, context: TrackerContext) -> None:
        self.every = options.every
        runs = context.run_dir.parent
        self.client = MlflowClient(tracking_uri=options.uri or f"sqlite:///{runs / 'mlflow.db'}")
        name = options.experiment or context.recipe_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = (runs / "mlflow-artifacts").resolve().as_uri() if options.uri is None else None
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        tags = {"once.run": context.run_name, "once.fingerprint": context.fingerprint}
        tags.update({f"version.{k}": v for k, v in context.versions.items()})
        self.run_id = self.client.create_run(experiment_id, run_name=context.run_name, tags=tags).info.run_id
        params = [Param(key(k), v) for k, v in flatten(context.recipe).items()]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + BATCH])
        self.finished = False

    def _metrics(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(key(k), float(v), now, step) for k, v in values.items() if v == v]  # NaN: not recorded
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def step(self, step: int, values: dict[str, float]) -> None:
        self._metrics({f"train/{k}": v for k, v in values.items()}, step)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._metrics(values, epoch)

    def finish(self, test: dict[str, float], groups: dict[str, dict[str, float]], artifacts: list[Path]) -> None:
        values = {f"test/{k}": v for k, v in test.items()}
        values.update({f"groups/{g}/{k}": v for g, group in groups.items() for k, v in group.items()})
        self._metrics(values, 0)
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.log_batch(self.run_id, tags=[RunTag("once.finished", "true")])
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def close(self) -> None:
        if not self.finished:  # training failed or was interrupted: say so in the store
            self.client.set_terminated(self.run_id, "KILLED")
            self.finished = True
