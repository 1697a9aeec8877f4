"""`once sweep`: Optuna over any recipe keys, every trial a normal run, the study in a database so it resumes.

The objective is the recipe's dev metric (`train.metric`), the best over a trial's epochs; each epoch's value is
reported to the pruner, which stops a trial that is doing worse than the others had at that epoch. A trial killed
with the sweep is run again with the same values when the sweep restarts, resuming its own run directory.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from rich.console import Console

from once.errors import Interrupted, OnceError, RecipeError
from once.files import read_text, write_atomic
from once.recipe import ResolvedRecipe, load_recipe
from once.registry import Registry
from once.seeds import existing_run
from once.train import train

try:
    import optuna
    from optuna.trial import TrialState
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError
except ImportError:
    raise OnceError("once sweep needs Optuna, which is not installed", hint='pip install "once[sweep]"') from None

log = logging.getLogger(__name__)
PRUNERS = ("median", "hyperband", "none")
HEARTBEAT, GRACE = 10, 60  # seconds: a worker's heartbeat, and how long a silent trial stays running
SQLITE_WAIT = 60  # seconds a SQLite study waits for another process's lock (SQLite's own default: 5)


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self


class FloatRange(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)


class IntRange(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


Dimension = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


@dataclass(frozen=True)
class Space:
    """Recipe key -> its range, read from a space file and checked against the recipe."""

    path: Path
    dimensions: dict[str, FloatRange | IntRange | Choice]

    def suggest(self, trial) -> dict[str, Any]:
        values = {}
        for key, dim in self.dimensions.items():
            if isinstance(dim, FloatRange):
                values[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log, step=dim.step)
            elif isinstance(dim, IntRange):
                values[key] = trial.suggest_int(key, dim.low, dim.high, log=dim.log, step=dim.step)
            else:
                values[key] = trial.suggest_categorical(key, dim.choices)
        return values


def overrides_for(values: dict[str, Any]) -> list[str]:
    """`--set` strings for a trial's values (JSON is YAML, so every value reads back as itself)."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def read_space(path: Path, recipe: str, registry: Registry, overrides: list[str]) -> Space:
    """The space file, each key validated against the recipe at its range's ends (or each choice): an unknown key
    or a value the recipe refuses is an error naming the file, line and key before any trial runs."""
    text = read_text(path)
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RecipeError(f"the space file is not valid YAML: {error}", where=str(path)) from None
    if not isinstance(data, dict) or not data:
        raise RecipeError(
            "a space file maps recipe keys to ranges",
            where=str(path),
            hint="Example:  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}",
        )
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value} if node is not None else {}
    adapter = TypeAdapter(Dimension)
    dimensions = {}
    for key, spec in data.items():
        where = f"{path}:{lines.get(str(key), 1)}"
        try:
            dim = adapter.validate_python(spec)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'range'}: {e['msg']}" for e in error.errors())
            raise RecipeError(
                f"{key}: not a range ({problems})",
                where=where,
                hint="Use {type: float|int, low: ..., high: ..., log: true|false} or "
                "{type: categorical, choices: [...]}.",
            ) from None
        ends = dim.choices if isinstance(dim, Choice) else [dim.low, dim.high]
        for value in ends:
            try:
                load_recipe(recipe, registry, [*overrides, *overrides_for({str(key): value})])
            except OnceError as error:
                raise RecipeError(
                    f"{key} = {value!r} does not make a valid recipe: {error.message}",
                    where=where,
                    hint=error.hint or "Check the key's spelling and its range (once recipe show RECIPE).",
                ) from None
        dimensions[str(key)] = dim
    return Space(path, dimensions)


def _sampler(name: str, seed: int):
    wanted = name.lower().removesuffix("sampler")
    for attribute in dir(optuna.samplers):
        if attribute.lower() == f"{wanted}sampler":
            sampler = getattr(optuna.samplers, attribute)
            for arguments in ({"seed": seed}, {}):  # some samplers take no seed
                try:
                    return sampler(**arguments)
                except TypeError:
                    continue
            raise RecipeError(
                f"the {attribute} needs arguments once sweep cannot give it (a grid, a base sampler)",
                where="--sampler",
                hint="Use tpe, random, cmaes, qmc or gp.",
            )
    known = sorted(a.removesuffix("Sampler").lower() for a in dir(optuna.samplers) if a.endswith("Sampler"))
    raise RecipeError(f"unknown sampler '{name}'", where="--sampler", hint=f"Optuna's samplers: {', '.join(known)}.")


def _pruner(name: str, epochs: int):
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


@dataclass
class SweepResult:
    study: Any  # optuna.Study
    best: ResolvedRecipe | None
    out: Path
    ran: int  # trials this invocation ran


def run_sweep(
    recipe: str,
    space_file: Path,
    trials: int,
    out: Path,
    registry: Registry,
    *,
    overrides: list[str] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    console: Console | None = None,
) -> SweepResult:
    """Run the study until it has `trials` finished trials (completed or pruned), resuming it if it exists."""

    if pruner not in PRUNERS:
        raise RecipeError(f"unknown pruner '{pruner}'", where="--pruner", hint=f"Use one of {', '.join(PRUNERS)}.")
    overrides = list(overrides or [])
    console = console or Console(stderr=True)
    base = load_recipe(recipe, registry, overrides)
    space = read_space(space_file, recipe, registry, overrides)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _database(storage):
        study = optuna.create_study(
            storage=_storage(storage),
            study_name=study_name or base.name,
            direction="maximize",
            pruner=_pruner(pruner, base.recipe.train.epochs),
            load_if_exists=True,
        )
        # seeded by the recipe and the trials so far: a resumed study draws new values, not its first ones again
        study.sampler = _sampler(sampler, base.recipe.seed + len(study.trials))
        _requeue_interrupted(study)
        metric = base.recipe.train.metric
        runs = out / "runs"
        quiet = Console(stderr=True, quiet=True)

        def objective(trial) -> float:
            values = space.suggest(trial)
            resolved = load_recipe(recipe, registry, [*overrides, *overrides_for(values)])
            previous = existing_run(runs, resolved)  # a trial killed with the sweep: its run goes on
            console.print(
                f"trial {trial.number}: "
                + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            )

            def report(record: dict[str, Any]) -> None:
                trial.set_user_attr("epochs", record["epoch"])
                trial.report(record["dev"][metric], record["epoch"])
                if trial.should_prune():
                    console.print(
                        f"trial {trial.number}: pruned after epoch {record['epoch']} "
                        f"(dev {metric} {record['dev'][metric]:.4f})"
                    )
                    raise optuna.TrialPruned()

            try:
                result = train(
                    resolved,
                    runs_root=runs,
                    resume=previous.path if previous and (previous.path / "run.json").exists() else None,
                    console=quiet,
                    on_epoch_end=report,
                )
            except Interrupted:  # Ctrl-C: the next run of the sweep runs these values again, resuming the run
                trial.set_user_attr("interrupted", True)
                raise
            trial.set_user_attr("run", str(result.run.path))
            if result.test:
                trial.set_user_attr("test", result.test)
            return max(record["dev"][metric] for record in result.epochs)

        finished = _finished(study)
        todo = max(0, trials - finished)
        if todo:
            console.print(f"study {study.study_name}: {finished} trial(s) finished, running {todo} more")
            done = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
            study.optimize(objective, n_trials=todo, catch=(), callbacks=[done])  # other workers count too
        best = None
        if any(t.state == TrialState.COMPLETE for t in study.trials):
            best = load_recipe(recipe, registry, [*overrides, *overrides_for(study.best_trial.params)])
            write_atomic(out / "best.yaml", best.to_yaml())
        write_atomic(out / "trials.csv", trials_csv(study))
        _plots(study, out)
        return SweepResult(study, best, out, todo)


@contextlib.contextmanager
def _database(storage: str) -> Iterator[None]:
    """A study database that cannot be used (locked past SQLITE_WAIT, unreachable) as an error naming it."""
    try:
        yield
    except OperationalError as error:
        raise OnceError(
            f"the study's database could not be used: {error.orig}",
            where=make_url(storage).render_as_string(hide_password=True),
            hint="Another process may hold it (a worker, a dashboard); rerun the same command to resume the study.",
        ) from None


def _storage(storage: str) -> optuna.storages.RDBStorage:
    """The study's storage with worker heartbeats: a trial whose worker died (killed, lost machine) is failed after
    GRACE s silent and its values queued again, while the trials of live workers sharing the study are left alone.
    On SQLite a write waits SQLITE_WAIT s for another worker's lock before it fails."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # its name from Optuna 4.9
    retry = retry or optuna.storages.RetryFailedTrialCallback
    engine = {"connect_args": {"timeout": SQLITE_WAIT}} if storage.startswith("sqlite") else None
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: what they do is documented above
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            storage,
            engine_kwargs=engine,
            heartbeat_interval=HEARTBEAT,
            grace_period=GRACE,
            heartbeat_stale_trial_callback=retry(max_retry=3),
        )


def _finished(study) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def _requeue_interrupted(study) -> None:
    """Trials stopped by Ctrl-C (failed, marked interrupted): their values queued to run again first, once."""
    requeued = set(study.user_attrs.get("requeued", []))
    for trial in study.trials:
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in requeued:
            study.enqueue_trial(trial.params, skip_if_exists=False)
            requeued.add(trial.number)
            log.info("trial %d was interrupted; its values run again", trial.number)
    study.set_user_attr("requeued", sorted(requeued))


def trials_table_rows(study) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the study's trials, for a table: number, state, value, epochs run and each value."""
    keys = sorted({k for t in study.trials for k in t.params})
    rows = [
        [
            str(t.number),
            t.state.name.lower(),
            "" if t.value is None else f"{t.value:.4f}",
            str(t.user_attrs.get("epochs", "")),
            *(_short(t.params.get(k, "")) for k in keys),
        ]
        for t in study.trials
    ]
    return ["trial", "state", "value", "epochs", *keys], rows


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_csv(study) -> str:
    keys = sorted({k for t in study.trials for k in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", "value", "epochs", *keys, "run"])
    for t in study.trials:
        writer.writerow(
            [
                t.number,
                t.state.name,
                "" if t.value is None else t.value,
                t.user_attrs.get("epochs", ""),
                *(t.params.get(k, "") for k in keys),
                t.user_attrs.get("run", ""),
            ]
        )
    return buffer.getvalue()


def _plots(study, out: Path) -> None:
    """Optimisation history and parameter importances as PNG (Optuna's matplotlib plots); importances need two
    completed trials that differ."""
    import matplotlib
    from optuna.exceptions import ExperimentalWarning

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    for name, draw in (("history", plots.plot_optimization_history), ("importances", plots.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = draw(study)
        except (ValueError, RuntimeError) as error:  # too few trials for this plot
            log.info("no %s plot: %s", name, error)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120)
        plt.close(figure)
        write_atomic(out / f"{name}.png", buffer.getvalue())
