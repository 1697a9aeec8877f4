"""The `tensorboard` tracker: event files in the run directory (`tensorboard --logdir RUN_DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

from once.api import TrackerContext
from once_plugins.trackers.extra import missing
from once_plugins.trackers.parts import TensorBoardOptions

try:
    import tensorboard  # noqa: F401  (torch's writer needs it)
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    raise missing("tensorboard", "tensorboard", "tensorboard") from None


class TensorBoardTracker:
    """Scalars: `train/*` per step, `dev/*` and `epoch/*` per epoch, `test/*` and `groups/<group>/<metric>` at
    the end (step 0); the recipe, fingerprint and versions as text."""

    def __init__(self, options: TensorBoardOptions, context: TrackerContext) -> None:
        self.every = options.every
        self.writer = SummaryWriter(log_dir=str(context.run_dir / options.folder))
        self.writer.add_text("run/recipe", "```\n" + json.dumps(context.recipe, indent=2) + "\n```", 0)
        self.writer.add_text("run/fingerprint", context.fingerprint, 0)
        self.writer.add_text("run/versions", json.dumps(context.versions), 0)

    def step(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def finish(self, test: dict[str, float], groups: dict[str, dict[str, float]], artifacts: list[Path]) -> None:
        for name, value in test.items():
            self.writer.add_scalar(f"test/{name}", value, 0)
        for group, values in groups.items():
            for name, value in values.items():
                self.writer.add_scalar(f"groups/{group}/{name}", value, 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
