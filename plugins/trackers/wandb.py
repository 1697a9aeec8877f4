"""The `wandb` tracker: a Weights & Biases run, offline by default (files in RUN_DIR/wandb; `wandb sync` uploads
them later, if you choose). Config: the resolved recipe with the fingerprint and versions; history: `train/*` per
step, `dev/*` and `epoch/*` per epoch against `epoch`; summary: `test/*` and `groups/<group>/<metric>`; the
run's result files saved with it."""

from __future__ import annotations

from pathlib import Path

from once.api import TrackerContext
from once_plugins.trackers.extra import missing
from once_plugins.trackers.parts import WandbOptions

try:
    import wandb
except ImportError:
    raise missing("wandb", "wandb", "wandb") from None


class WandbTracker:
    def __init__(self, options: WandbOptions, context: TrackerContext) -> None:
        self.every = options.every
        self.run = wandb.init(
            project=options.project,
            entity=options.entity,
            mode=options.mode,
            dir=str(context.run_dir),
            name=context.run_name,
            config={**context.recipe, "once": {"fingerprint": context.fingerprint, "versions": context.versions}},
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            reinit="create_new",
        )
        self.run.define_metric("epoch")
        for prefix in ("dev/*", "epoch/*"):
            self.run.define_metric(prefix, step_metric="epoch")
        self.run_dir = context.run_dir

    def step(self, step: int, values: dict[str, float]) -> None:
        self.run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **values})

    def finish(self, test: dict[str, float], groups: dict[str, dict[str, float]], artifacts: list[Path]) -> None:
        self.run.summary.update({f"test/{k}": v for k, v in test.items()})
        self.run.summary.update({f"groups/{g}/{k}": v for g, group in groups.items() for k, v in group.items()})
        for path in artifacts:
            self.run.save(str(path), base_path=str(self.run_dir), policy="now")

    def close(self) -> None:
        self.run.finish()
