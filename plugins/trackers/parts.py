"""The experiment trackers of this package: TensorBoard, MLflow, Weights & Biases and a JSON-lines file in the run
directory. A recipe lists them in `track` (`once train --track NAME` adds one); docs/tracking.md says what each
records and where.

This module is the package's entry point. It imports no tracker library: each implementation is named by
reference and imported when a recipe builds it, and says which extra to install when its library is missing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from once.api import Options, hookimpl


class TrackerOptions(Options):
    every: int = Field(10, ge=1, description="record the training step's values every this many optimizer steps")


class TensorBoardOptions(TrackerOptions):
    folder: str = Field("tensorboard", pattern=r"^[\w.-]+$", description="event files' folder in the run directory")


class MlflowOptions(TrackerOptions):
    uri: str | None = Field(
        None, description="tracking URI (a server, a file store, a database); default: sqlite:///RUNS/mlflow.db"
    )
    experiment: str | None = Field(None, description="experiment name; default: the recipe's name")


class WandbOptions(TrackerOptions):
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline: files in the run directory only, nothing leaves the machine"
    )
    project: str = Field("once", description="the W&B project")
    entity: str | None = Field(None, description="the W&B team or user (online mode)")


class JsonlOptions(TrackerOptions):
    file: str = Field("track.jsonl", pattern=r"^[\w.-]+$", description="file in the run directory, one event a line")


@hookimpl
def register_trackers(register):
    register("tensorboard", "once_plugins.trackers.tensorboard:TensorBoardTracker", TensorBoardOptions)
    register("mlflow", "once_plugins.trackers.mlflow:MlflowTracker", MlflowOptions)
    register("wandb", "once_plugins.trackers.wandb:WandbTracker", WandbOptions)
    register("jsonl", "once_plugins.trackers.jsonl:JsonlTracker", JsonlOptions)
