"""The training loop: sampled negatives, softmax cross-entropy, Adam, early stopping, resumable epochs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from once.checkpoint import load_model, load_training_state, save_model, save_training_state
from once.data.files import write_json
from once.data.prepare import PreparedData, prepare
from once.data.sampling import TrainingSamples, training_batches
from once.errors import DataError, Interrupted, OnceError
from once.evaluate import evaluate, evaluation_settings, score_split, split_metrics, user_groups
from once.model import Recommender, build_recommender, parameter_groups
from once.progress import progress_bar
from once.recipe import ResolvedRecipe
from once.runs import BEST, STATE, TEST, TEST_GROUPS, Run
from once.states import attach_cache

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    run: Run
    epochs: list[dict[str, Any]]
    test: dict[str, float] | None
    test_groups: dict[str, dict[str, float]]  # cold and warm users apart


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OnceError("the recipe asks for device: cuda, but no CUDA GPU is available", hint="Use device: auto.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise OnceError("the recipe asks for device: mps, but Apple's MPS is not available", hint="Use device: auto.")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: resuming at any epoch replays exactly what an uninterrupted run does."""
    return seed * 1_000_003 + epoch


class Trainer:
    """Trains one recipe; every file it writes goes into the run directory it is given."""

    def __init__(self, resolved: ResolvedRecipe, data: PreparedData, console: Console) -> None:
        self.resolved, self.data, self.console = resolved, data, console
        self.recipe = resolved.recipe
        self.device = pick_device(self.recipe.device)
        for split in ("train", "dev"):
            if split not in data.splits:
                raise DataError(f"the dataset has no {split} split, which training needs")
        dev = data.splits["dev"]
        if not dev.labeled or not (dev.labels.values == 1).any():
            raise DataError("the dev split has no labeled clicks, so epochs cannot be compared or stopped early")
        torch.manual_seed(self.recipe.seed)
        self.model: Recommender = build_recommender(resolved, data).to(self.device)
        attach_cache(self.model, data, build=True, batch_size=resolved.recipe.eval.batch_size, device=self.device)
        train = self.recipe.train
        groups = parameter_groups(self.model, train.lr)
        if not groups and train.epochs:
            raise OnceError("this model has no trainable parameters", where="train.epochs", hint="Set train.epochs: 0.")
        self.optimizer = torch.optim.Adam(groups or [torch.zeros(0)], lr=train.lr, weight_decay=train.weight_decay)
        warmup = train.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": None, "bad_epochs": 0, "records": []}
        split = data.splits["train"]
        self.samples = TrainingSamples.from_split(split)
        if not len(self.samples):
            raise DataError("the training split has no clicked candidates to learn from")
        self.histories = split.history.all_padded(train.max_history)

    def resume(self, run: Run) -> None:
        self.state = load_training_state(run.path / STATE, self.model, self.optimizer, self.scheduler)

    def fit(self, run: Run, on_epoch_end: EpochCallback | None = None) -> None:
        train = self.recipe.train
        if train.epochs == 0:  # a training-free model: its initial state is the one to test
            save_model(run.path / BEST, self.model)
            return
        while self.state["epoch"] < train.epochs and not self._stopped_early():
            epoch = self.state["epoch"]
            record = self._train_epoch(epoch)
            record["dev"] = evaluate(
                self.model, self.data.splits["dev"], **evaluation_settings(self.resolved, self.data, self.device)
            )
            self._finish_epoch(run, record)
            if on_epoch_end:
                on_epoch_end(record)

    def _stopped_early(self) -> bool:
        patience = self.recipe.train.patience
        return patience is not None and self.state["bad_epochs"] >= patience

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        train = self.recipe.train
        torch.manual_seed(epoch_seed(self.recipe.seed, epoch))
        rng = np.random.default_rng(epoch_seed(self.recipe.seed, epoch))
        negatives = self.samples.negatives(train.negatives, self.data.num_items, rng)
        order = rng.permutation(len(self.samples))
        batches = -(-len(order) // train.batch_size)
        if train.max_steps:
            batches = min(batches, train.max_steps * train.accumulate)
        self.model.train()
        self.optimizer.zero_grad()
        total_loss, seen, started = 0.0, 0, time.perf_counter()
        split = self.data.splits["train"]
        with progress_bar(
            "loss {task.fields[loss]:.4f}", "{task.fields[rate]:.0f} samples/s", console=self.console
        ) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{train.epochs}", total=batches, loss=float("nan"), rate=0.0)
            stream = training_batches(self.samples, self.histories, split.user_ids, negatives, order, train.batch_size)
            for step, batch in enumerate(stream):
                if step == batches:
                    break
                batch = {k: v.to(self.device) for k, v in batch.items()}
                scores = self.model(batch["history"], batch["candidates"], batch["users"])
                target = torch.zeros(len(scores), dtype=torch.long, device=self.device)  # the click is first
                loss = F.cross_entropy(scores, target)
                (loss / train.accumulate).backward()
                if (step + 1) % train.accumulate == 0 or step + 1 == batches:
                    self._optimizer_step()
                total_loss += loss.item() * len(scores)
                seen += len(scores)
                rate = seen / (time.perf_counter() - started)
                progress.update(task, advance=1, loss=total_loss / seen, rate=rate)
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch + 1,
            "train_loss": total_loss / seen,
            "samples_per_s": seen / seconds,
            "seconds": seconds,
        }

    def _optimizer_step(self) -> None:
        if self.recipe.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()

    def _finish_epoch(self, run: Run, record: dict[str, Any]) -> None:
        metric = self.recipe.train.metric
        value = record["dev"][metric]
        if self.state["best"] is None or value > self.state["best"]:
            self.state.update(best=value, best_epoch=record["epoch"], bad_epochs=0)
            save_model(run.path / BEST, self.model)
        else:
            self.state["bad_epochs"] += 1
        self.state["epoch"] = record["epoch"]
        self.state["records"].append(record)
        run.write_epochs(self.state["records"])
        save_training_state(run.path / STATE, self.model, self.optimizer, self.scheduler, self.state)

    def test(self, run: Run) -> tuple[dict[str, float] | None, dict[str, dict[str, float]]]:
        """Test metrics of the best epoch, and the same for cold and warm users apart (when both are present)."""
        split = self.data.splits.get("test")
        if split is None or not split.labeled:
            return None, {}
        load_model(run.path / BEST, self.model)
        scores = score_split(self.model, split, **evaluation_settings(self.resolved, self.data, self.device))
        metrics = split_metrics(split, scores)
        write_json(run.path / TEST, metrics)
        groups = {}
        for name, rows in user_groups(split, self.recipe.augment.cold_history).items():
            if 0 < len(rows) < len(split):
                groups[name] = {**split_metrics(split, scores, rows), "impressions": len(rows)}
        if groups:
            write_json(run.path / TEST_GROUPS, groups)
        return metrics, groups


def train(
    resolved: ResolvedRecipe,
    *,
    runs_root: Path = Path("runs"),
    resume: Path | None = None,
    plugins: dict[str, str] | None = None,
    console: Console | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train a recipe into a new run directory under `runs_root`, or continue the run at `resume`."""
    console = console or Console(stderr=True)
    data = prepare(resolved)
    for note in data.notes:
        log.warning(note)
    trainer = Trainer(resolved, data, console)  # built before the run directory: a bad recipe leaves nothing behind
    run = Run.open(resume) if resume else Run.create(runs_root, resolved, plugins or {})
    if resume and (run.path / STATE).exists():
        trainer.resume(run)
    try:
        trainer.fit(run, on_epoch_end)
    except KeyboardInterrupt:
        raise Interrupted(
            f"training interrupted after {trainer.state['epoch']} completed epoch(s)",
            where=str(run.path),
            hint=f"Continue with: once train --resume {run.path}",
        ) from None
    return TrainResult(run, trainer.state["records"], *trainer.test(run))
