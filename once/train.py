"""The training loop: sampled negatives, softmax cross-entropy, Adam, early stopping, resumable epochs."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel

from once.assembly import assemble, pick_device, prepare_once, set_execution, start_world
from once.checkpoint import load_model, load_training_state, save_model, save_training_state
from once.data.prepare import PreparedData
from once.data.sampling import RankingRows, TrainingSamples, prefetched, ranking_batches, training_batches
from once.distributed import World
from once.errors import DataError, Interrupted, OnceError
from once.evaluate import autocast, evaluate, evaluation_settings
from once.files import LOCK, exclusive, write_json
from once.measure import MetricSuite, category_fields, group_metrics, measure, save_impressions
from once.model import Recommender, parameter_groups
from once.progress import progress_bar
from once.recipe import ResolvedRecipe
from once.runs import BEST, STATE, TEST, TEST_GROUPS, TEST_IMPRESSIONS, Run
from once.tracking import Tracking

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    run: Run
    epochs: list[dict[str, Any]]
    test: dict[str, float] | None
    test_groups: dict[str, dict[str, float]]  # cold and warm users apart


@dataclass
class Progress:
    """The trainer's bookkeeping between epochs, saved with every training state so a resumed run goes on."""

    epoch: int = 0  # completed epochs
    best: float | None = None  # best dev value of train.metric so far
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    records: list[dict[str, Any]] = field(default_factory=list)  # one per completed epoch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: resuming at any epoch replays exactly what an uninterrupted run does."""
    return seed * 1_000_003 + epoch


class Trainer:
    """Trains one recipe; every file it writes goes into the run directory it is given."""

    def __init__(
        self, resolved: ResolvedRecipe, data: PreparedData, console: Console, world: World | None = None
    ) -> None:
        self.resolved, self.data, self.console = resolved, data, console
        self.world = world or World()
        self.recipe = resolved.recipe
        self.device = pick_device(self.recipe.device, self.world)
        self._check_data()
        self.suite = MetricSuite.build(resolved, category_fields(data))  # a bad eval.metrics fails before training
        self._setup_model()
        self._setup_optimizer()
        self._setup_data()
        self.progress = Progress()
        self.tracking = Tracking([])  # the recipe's trackers, set by `train` once the run directory exists

    def _check_data(self) -> None:
        for split in ("train", "dev"):
            if split not in self.data.splits:
                raise DataError(f"the dataset has no {split} split, which training needs")
        dev = self.data.splits["dev"]
        if not dev.labeled or not (dev.labels.values == 1).any():
            raise DataError("the dev split has no labeled clicks, so epochs cannot be compared or stopped early")

    def _setup_model(self) -> None:
        """The model on its device with its cache, compiled if asked, wrapped in DDP under torchrun."""
        self.model: Recommender = assemble(self.resolved, self.data, self.device, cache="build", world=self.world)
        if self.recipe.compile:
            self.model.item_encoder.compile(dynamic=True)
            self.model.user_encoder.compile(dynamic=True)
        self.forward = self.model
        if self.world.distributed and any(p.requires_grad for p in self.model.parameters()):
            # parts a batch may leave unused (a masked view, LoRA's frozen base, profile fusion without profiles)
            # must not stall the gradient all-reduce
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            with warnings.catch_warnings():  # torch >= 2.13 renames the option; its successor is absent before
                warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
                self.forward = DistributedDataParallel(
                    self.model, device_ids=device_ids, find_unused_parameters=True, broadcast_buffers=False
                )  # the item features never change; learned statistics are shared after each epoch

    def _setup_optimizer(self) -> None:
        train = self.recipe.train
        groups = parameter_groups(self.model, train.lr)
        if not groups and train.epochs:
            raise OnceError("this model has no trainable parameters", where="train.epochs", hint="Set train.epochs: 0.")
        # the fused kernel updates every parameter in one pass: on 2 CPU cores 3.9 ms a step for NRMS's 5.1M
        # parameters against 59 ms for the per-parameter loop (docs/benchmarks.md, "Training at the machine's limit")
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(
            groups or [torch.zeros(0, device=self.device)], lr=train.lr, weight_decay=train.weight_decay, fused=fused
        )
        warmup = train.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )

    def _setup_data(self) -> None:
        split = self.data.splits["train"]
        self.samples = TrainingSamples.from_split(split)
        if not len(self.samples):
            raise DataError("the training split has no clicked candidates to learn from")
        self.rows = RankingRows.from_split(split) if self.recipe.train.task == "ranking" else None

    def _epoch_batches(self, rng: np.random.Generator) -> tuple[int, Iterator[dict[str, torch.Tensor]]]:
        """(batches, stream) of one epoch: per click with its sampled negatives (matching), or the kept rows of
        whole impressions (ranking)."""
        train, split = self.recipe.train, self.data.splits["train"]
        if self.rows is not None:
            kept = self.rows.kept(train.unclicked_rate, rng)
            return ranking_batches(
                self.rows, kept, split.history, split.user_ids, rng, train.batch_size, train.max_history
            )
        negatives = self.samples.negatives(train.negatives, self.data.num_items, rng)
        order = rng.permutation(len(self.samples))
        stream = training_batches(
            self.samples, split.history, split.user_ids, negatives, order, train.batch_size, train.max_history
        )
        return -(-len(order) // train.batch_size), stream

    def resume(self, run: Run) -> None:
        saved = load_training_state(
            run.path / STATE, self.model, self.optimizer, self.scheduler, self.resolved.fingerprint
        )
        self.progress = Progress(**saved)

    def fit(self, run: Run, on_epoch_end: EpochCallback | None = None) -> None:
        train = self.recipe.train
        if train.epochs == 0:  # a training-free model: its initial state is the one to test
            if self.world.main:
                save_model(run.path / BEST, self.model, self.resolved.fingerprint)
            self.world.barrier()
            return
        while self.progress.epoch < train.epochs and not self._stopped_early():
            epoch = self.progress.epoch
            record = self._train_epoch(epoch)
            self._share_statistics()
            record["dev"] = evaluate(self.model, self.data.splits["dev"], **self._evaluation_settings())
            self._finish_epoch(run, record)
            self.tracking.epoch(record["epoch"], epoch_values(record))
            if on_epoch_end:
                on_epoch_end(record)

    def _stopped_early(self) -> bool:
        patience = self.recipe.train.patience
        return patience is not None and self.progress.bad_epochs >= patience

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        train = self.recipe.train
        torch.manual_seed(epoch_seed(self.recipe.seed, epoch) + self.world.rank)  # each rank its own dropout
        rng = np.random.default_rng(epoch_seed(self.recipe.seed, epoch))  # the same batches on every rank
        batches, stream = self._epoch_batches(rng)
        if train.max_steps:
            batches = min(batches, train.max_steps * train.accumulate)
        self.model.train()
        self.optimizer.zero_grad()
        total_loss, seen, started = 0.0, 0, time.perf_counter()
        terms: dict[str, float] = {}  # auxiliary loss terms, summed over rows like the click loss
        with progress_bar(
            "loss {task.fields[loss]}", "{task.fields[rate]} samples/s", console=self.console
        ) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{train.epochs}", total=batches, loss="-", rate="-")
            ahead = contextlib.closing(prefetched(islice(stream, batches), train.prefetch))
            with ahead as ready:
                for step, batch in enumerate(ready):
                    syncing = (step + 1) % train.accumulate == 0 or step + 1 == batches
                    loss, rows, step_terms = self.step(batch, syncing)
                    total_loss += loss * rows
                    seen += rows
                    for name, value in step_terms.items():
                        terms[name] = terms.get(name, 0.0) + value * rows
                    rate = seen * self.world.size / (time.perf_counter() - started)
                    progress.update(task, advance=1, loss=f"{total_loss / seen:.4f}", rate=f"{rate:.0f}")
                    if syncing and self.tracking.trackers:
                        self.tracking.step(self.scheduler.last_epoch, self._step_values(loss, step_terms, rate))
        seconds = time.perf_counter() - started
        names = sorted(terms)
        total_loss, seen, *sums = self.world.all_sum([total_loss, seen, *(terms[n] for n in names)])
        record = {
            "epoch": epoch + 1,
            "train_loss": total_loss / seen,  # the click loss, comparable across models
            "samples_per_s": seen / seconds,
            "seconds": seconds,
        }
        if names:
            record["train_terms"] = {name: value / seen for name, value in zip(names, sums, strict=True)}
        return record

    def _step_values(self, loss: float, terms: dict[str, float], rate: float) -> dict[str, float]:
        """What trackers get per step: the click loss, each auxiliary term, the learning rate(s), samples/s."""
        values = {"loss": loss, **{f"loss_{name}": value for name, value in terms.items()}}
        for group, lr in enumerate(self.scheduler.get_last_lr()):
            values["lr" if group == 0 else f"lr_{group}"] = lr
        values["samples_per_s"] = rate
        return values

    def step(self, batch: dict[str, torch.Tensor], syncing: bool = True) -> tuple[float, int, dict[str, float]]:
        """Forward and backward for this rank's share of one global batch, and an optimizer step when `syncing`
        (the last batch of an accumulated step). Returns the share's mean click loss, its size (samples: clicks
        for matching, candidate rows for ranking) and the parts' auxiliary loss terms (trained on with the click
        loss, reported apart)."""
        # weighting each share by its samples makes DDP's average of the ranks' gradients the gradient of the
        # global batch's mean loss, however the batch divides among ranks
        world, weight = self.world, 1.0
        impressions, total = len(batch["candidates"]), samples_in(batch)
        if world.distributed and impressions >= world.size:  # fewer rows than ranks: every rank takes them all
            batch = {k: v[world.shard(impressions)] for k, v in batch.items()}
            weight = samples_in(batch) * world.size / total
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with self._no_sync(not syncing):
            with autocast(self.device, self.recipe.precision):
                scores, terms = self.forward(batch["history"], batch["candidates"], batch["users"], with_terms=True)
            loss = click_loss(scores.float(), batch.get("labels"))
            ((loss + sum(terms.values())) * weight / self.recipe.train.accumulate).backward()
        if syncing:
            self._optimizer_step()
        return loss.item(), samples_in(batch), {name: term.item() for name, term in terms.items()}

    def _share_statistics(self) -> None:
        """Under torchrun, rank 0's learned buffers (batch norm's running statistics: docvec, DIN's Dice) on every
        rank: DDP leaves buffers alone (broadcast_buffers=False), so each rank's estimate drifted on its own shard,
        and ranks that evaluate or save must agree. The item features are fixed and not persistent: left out."""
        if not self.world.distributed:
            return
        parameters = {id(p) for p in self.model.parameters()}
        for tensor in self.model.state_dict(keep_vars=True).values():
            if id(tensor) not in parameters and tensor.is_floating_point():
                self.world.broadcast_(tensor.data)

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """Under DDP, no gradient all-reduce for the batches an accumulated step adds up before its last."""
        if skip and isinstance(self.forward, DistributedDataParallel):
            return self.forward.no_sync()
        return contextlib.nullcontext()

    def _evaluation_settings(self) -> dict[str, Any]:
        return evaluation_settings(self.resolved, self.data, self.device, self.world)

    def _optimizer_step(self) -> None:
        if self.recipe.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()

    def _finish_epoch(self, run: Run, record: dict[str, Any]) -> None:
        """Keep the best weights and the training state; under torchrun rank 0 writes, the others wait."""
        metric = self.recipe.train.metric
        value = record["dev"][metric]
        progress = self.progress
        improved = progress.best is None or value > progress.best
        if improved:
            progress.best, progress.best_epoch, progress.bad_epochs = value, record["epoch"], 0
        else:
            progress.bad_epochs += 1
        progress.epoch = record["epoch"]
        progress.records.append(record)
        if self.world.main:
            if improved:
                save_model(run.path / BEST, self.model, self.resolved.fingerprint)
            run.write_epochs(progress.records)
            state = run.path / STATE
            save_training_state(
                state, self.model, self.optimizer, self.scheduler, asdict(progress), self.resolved.fingerprint
            )
        self.world.barrier()

    def test(self, run: Run) -> tuple[dict[str, float] | None, dict[str, dict[str, float]]]:
        """The recipe's metrics (eval.metrics) on the test split with the best epoch's weights, overall and by group
        of users and of items; rank 0 also keeps every impression's scores and metric values."""
        split = self.data.splits.get("test")
        if split is None or not split.labeled:
            return None, {}
        load_model(run.path / BEST, self.model, self.resolved.fingerprint)
        _, scored, values, metrics = measure(self.suite, self.model, self.data, split, self._evaluation_settings())
        evaluation = self.recipe.eval
        groups = group_metrics(
            self.suite, scored, split, self.data, evaluation.history_bins, self.recipe.augment.cold_history
        )
        if self.world.main:
            write_json(run.path / TEST, metrics)
            save_impressions(run.path / TEST_IMPRESSIONS, split, self.data, scored, values)
            if groups:
                write_json(run.path / TEST_GROUPS, groups)
        return metrics, groups


def samples_in(batch: dict[str, torch.Tensor]) -> int:
    """The loss terms a batch holds: one per click (matching) or per labeled candidate row (ranking)."""
    return int((batch["labels"] >= 0).sum()) if "labels" in batch else len(batch["candidates"])


def click_loss(scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The task's loss, a mean over the batch's samples: softmax cross-entropy over each click's candidates
    (the click first, matching), or binary cross-entropy of each labeled row's logit (ranking; label -1 pads)."""
    if labels is None:
        return F.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))
    labeled = labels >= 0
    return F.binary_cross_entropy_with_logits(scores[labeled], labels[labeled])


def epoch_values(record: dict[str, Any]) -> dict[str, float]:
    """An epoch's record as trackers get it, each key named as it is shown: `epoch/train_loss`,
    `epoch/samples_per_s`, `epoch/seconds`, `train/<term>`, `dev/<metric>`."""
    values = {f"epoch/{name}": record[name] for name in ("train_loss", "samples_per_s", "seconds")}
    values.update({f"train/{name}": value for name, value in record.get("train_terms", {}).items()})
    values.update({f"dev/{name}": value for name, value in record["dev"].items()})
    return values


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
    world = start_world(resolved)
    console = console or Console(stderr=True, quiet=not world.main)
    execution = set_execution(resolved)
    console.print(execution.describe())
    data = prepare_once(resolved, world)
    if world.main:
        for note in data.notes:
            log.warning(note)
    trainer = Trainer(resolved, data, console, world)  # built before the run directory: a bad recipe leaves nothing
    Tracking.check(resolved)  # a tracker whose package is missing: an error before the run directory, too
    run = Run.open(resume) if resume else None
    if run is None:  # rank 0 creates the run directory; the others learn its path
        path = str(Run.create(runs_root, resolved, plugins or {}, execution).path) if world.main else ""
        run = Run(Path(world.broadcast(path)))
    with exclusive(run.path / LOCK, "this run directory") if world.main else contextlib.nullcontext():
        if world.main:
            for path in run.remove_temporaries():
                log.info("removed %s, left by an interrupted write", path.name)
        if resume and (run.path / STATE).exists():
            trainer.resume(run)
            epochs = resolved.recipe.train.epochs
            console.print(f"resuming {run.path.name} after epoch {trainer.progress.epoch} of {epochs}")
        elif resume:
            console.print(f"resuming {run.path.name}: no epoch was completed, so training starts from the first")
        trainer.tracking = Tracking.start(resolved, run.path, plugins or {}, world.main)
        try:
            try:
                trainer.fit(run, on_epoch_end)
            except KeyboardInterrupt:
                raise Interrupted(
                    f"training interrupted after {trainer.progress.epoch} completed epoch(s)",
                    where=str(run.path),
                    hint=f"Continue with: once train --resume {run.path}",
                ) from None
            test, groups = trainer.test(run)
            trainer.tracking.finish(test or {}, groups, run.result_files())
        finally:
            trainer.tracking.close()
        return TrainResult(run, trainer.progress.records, test, groups)
