"""The contracts of every kind of part: what a plugin's implementation is built from and must return.

A part is registered as `register(name, implementation, options)`; the engine calls
`implementation(options, context)` with the validated recipe options and the context of its kind, and uses
what it returns through the protocol below. `docs/plugins.md` walks through them with an example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from once.errors import RecipeError

if TYPE_CHECKING:  # annotations only: importing the contracts must not import torch
    import numpy as np
    import torch

    from once.data.tables import Corpus


class Options(BaseModel):
    """Base of every part's recipe options: a key the model does not declare is an error, never ignored.

    The registry refuses an options model that allows extra keys, so a recipe typo cannot pass silently.
    """

    model_config = ConfigDict(extra="forbid")


class Register(Protocol):
    """The callback every `register_*` hook receives."""

    def __call__(self, name: str, implementation: Callable[[Any, Any], Any] | str, options: type[Options]) -> None:
        """Register `implementation(options, context) -> part` under `name`, with its options model.

        `implementation` may be a reference, "package.module:Attribute", imported only when a recipe builds the
        part: then listing parts, validating recipes and `once --help` never import the module's heavy
        dependencies (torch, transformers). The options model is always given itself.
        """


@dataclass(frozen=True)
class BuildContext:
    """What an item encoder, user encoder or predictor may know about the data and the parts before it."""

    vocab_size: int
    special_ids: tuple[int, ...]  # token ids that stand for no word (padding, unknown)
    word_vectors: torch.Tensor | None
    text_lengths: dict[str, int]  # tokenized text fields -> tokens per item
    category_sizes: dict[str, int]  # category fields -> number of values (0 = none)
    num_users: int  # users seen in training, plus the unknown user 0
    item_features: dict[str, torch.Tensor]  # the tokenized item table (statistics for training-free baselines)
    item_clicks: torch.Tensor  # (items,) clicks each item got in the training split
    tokenizer: dict  # the tokenizer's state (a transformers tokenizer names its checkpoint here)
    item_dim: int = 0  # output size of the item encoder (set for the user encoder and predictor)
    user_dim: int = 0  # output size of the user encoder (set for the predictor)
    user_vectors: int = 1  # vectors per user: K for a multi-interest user encoder (set for the predictor)
    candidate_aware_users: bool = False  # the user encoder gives one vector per candidate (set for the predictor)
    entities: int = 0  # entity ids of the `<field>_entities` features (recipe items.entities), 0 = no entity
    entity_vectors: torch.Tensor | None = None  # (entities, dim) pretrained entity vectors, when the dataset has them
    vector_dims: dict[str, int] = field(default_factory=dict)  # item vector fields (recipe items.vectors) -> dim

    def require_text(self, field: str, key: str = "model.item.field") -> str:
        """`field`, if the recipe tokenizes it; else an error naming the recipe key and the tokenized fields."""
        if field not in self.text_lengths:
            raise RecipeError(
                f"'{field}' is not a tokenized text field",
                where=key,
                hint=f"Tokenized fields (recipe items.text): {', '.join(self.text_lengths)}.",
            )
        return field

    def require_vectors(self, field: str, key: str = "model.item.field") -> int:
        """The dimension of the item vector field `field`; an error naming the recipe key when it is not kept."""
        if field not in self.vector_dims:
            raise RecipeError(
                f"'{field}' is not an item vector field of this run",
                where=key,
                hint=f"Item vector fields (recipe items.vectors): {', '.join(self.vector_dims) or 'none'}; the "
                "dataset must provide them (EB-NeRD: dataset.embeddings).",
            )
        return self.vector_dims[field]

    def require_entities(self, field: str, key: str = "model.item.field") -> str:
        """The feature holding `field`'s token-aligned entities; an error naming the recipe key when it is missing."""
        feature = f"{self.require_text(field, key)}_entities"
        if feature not in self.item_features:
            raise RecipeError(
                f"this model reads the entities linked in '{field}', which the recipe does not ask for",
                where="items.entities",
                hint=f"Add items.entities: [{field}] (the dataset must link entities in it, as MIND's news.tsv does).",
            )
        return feature


@dataclass(frozen=True)
class SchemeContext:
    """What an augmenter is built with."""

    key: str  # the scheme's key in the recipe's genre.schemes (for error messages)


class Dataset(Protocol):
    """A dataset, built as `implementation(options, None)`."""

    def fingerprint(self) -> str:
        """A hash of the inputs: changes whenever the data would read differently."""

    def read(self) -> Corpus:
        """Read the items and every available split."""

    # Optional: `export(out: Path) -> None` writes the dataset as MIND files (`once data NAME OUT`); without it
    # `once data` writes what `read()` returns (once.data.export.write_mind_files).


class Tokenizer(Protocol):
    """A tokenizer, built as `implementation(options, None)`."""

    vocab_size: int
    special_ids: tuple[int, ...]  # ids that stand for no word (padding 0, unknown, ...)

    def fingerprint(self) -> str:
        """Identifies files the tokenizer reads (e.g. word vectors), so the cache is rebuilt when they change."""

    def fit(self, texts: Iterable[str]) -> None:
        """Build the vocabulary from the training items' texts."""

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """At most `max_tokens` token ids of one text; 0 is reserved for padding."""

    def state(self) -> dict:
        """JSON-able state (the vocabulary), kept with the cache."""

    # Optional: `restore(state)` takes back what `state()` returned, so that text no item had when the cache was
    # built (a new item posted to `once serve`) is encoded as the training items were. Without it, a served run
    # cannot encode new items (the server says so).

    def word_vectors(self) -> torch.Tensor | None:
        """Pretrained vectors, one row per token id, or None."""


class ItemEncoder(Protocol):
    """An item encoder (a torch module), built as `implementation(options, BuildContext)`.

    Input: `{field: (n, tokens) token ids or (n,) category ids, "item": (n,) item indices}`; output `(n, dim)`.
    The output must not depend on trailing padding (token id 0), which the engine trims from each batch; item 0
    is the padding item (all fields 0). An item the data does not have (one posted to `once serve`) comes with
    item index -1 and its own fields; an encoder whose vectors come from per-item state rather than content
    (popularity, a random vector per item, cached states) sets `encodes_new_items = False`, and the server
    refuses new items. An encoder whose item vectors each read that item's features alone (no batch statistics,
    no loss term over the call's items) sets `independent_items = True`: the engine may then encode a batch's
    distinct items in several calls, grouped by length so that each is trimmed to its own longest text.
    """

    dim: int

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor: ...


class UserEncoder(Protocol):
    """A user encoder (a torch module), built as `implementation(options, BuildContext)` with `item_dim` set.

    Input: history vectors `(batch, history, item_dim)`, their mask `(batch, history)` (True = a real item) and
    user indices `(batch,)` (0 = a user not seen in training); output `(batch, dim)`. Padded positions must not
    change the output.

    A multi-interest encoder (MINER) sets `vectors = K` and returns `(batch, K, dim)`; the predictor then gets
    those K vectors per user and must accept them (the engine refuses one that says it does not).

    A candidate-aware encoder (CAUM) sets `candidate_aware = True` and is also given the candidates' vectors
    `(batch, candidates, item_dim)`; it returns one user vector per candidate, `(batch, candidates, dim)`.
    """

    dim: int

    def __call__(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Pairs:
    """What a predictor may read beside the vectors it scores: who the rows are and which items are scored.

    `users` (batch,) user indices, 0 for a user not seen in training; `items` (batch, candidates) the candidates'
    item indices (0 = padding; an item posted to `once serve` has an index past the data's items); `history`
    (batch, history) the history's item indices (0 = padding) and, for a predictor that sets
    `attends_history = True`, `history_vectors` (batch, history, item_dim) (None for the others, which the
    fast paths then never gather).
    """

    users: torch.Tensor
    items: torch.Tensor
    history: torch.Tensor
    history_vectors: torch.Tensor | None = None


class Predictor(Protocol):
    """A click predictor (a torch module), built as `implementation(options, BuildContext)` with both dims set.

    Input: user vectors `(batch, user_dim)`, candidate vectors `(batch, candidates, item_dim)` and the rows'
    `Pairs`; output scores `(batch, candidates)`, one logit per (user, candidate) pair. The matching task applies
    softmax cross-entropy over an impression's candidates, the ranking task binary cross-entropy to each pair
    (then `sigmoid(score)` is the click probability). A CTR predictor reads side fields (the user's id, the
    candidate's category or popularity) through `Pairs` and the tables of `BuildContext`; a history-attending
    one (DIN) sets `attends_history = True` and gets the history's item vectors. A predictor that trains under
    one task only sets `tasks = ("ranking",)` (or `("matching",)`): the engine refuses a recipe whose
    `train.task` it lacks.

    With a multi-interest user encoder (`BuildContext.user_vectors` K > 1) the users are `(batch, K, user_dim)`;
    a predictor that cannot combine K vectors raises a RecipeError when built with K > 1. A predictor whose score
    grows with the inner product of the candidate and a user vector (dot; MINER's K interests) sets
    `retrieves_by_inner_product = True`: `once serve --index hnsw` then lets an ANN index propose the candidates
    (by each user vector) that the predictor scores; a network predictor (DKN's) is served exactly.
    """

    def __call__(self, users: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor: ...


class Augmenter(Protocol):
    """A GENRE prompt scheme, built as `implementation(options, SchemeContext)`."""

    def requests(self, corpus: Any, outputs: Callable[[str], dict[str, Any]]) -> list[Any]:
        """One `once.api.Request` per id; `outputs(key)` reads another scheme's parsed values (for chains)."""

    def parse(self, answer: str, context: dict[str, Any]) -> Any:
        """The answer's value (JSON-able), or `once.api.MalformedAnswer`; `context` is the request's."""


@dataclass(frozen=True)
class MetricContext:
    """What a metric is built with: the recipe's top-k cut-offs, the item category fields the data has, and the
    training task (under `ranking`, `sigmoid(score + log(unclicked_rate))` is a calibrated click probability)."""

    k: tuple[int, ...]  # eval.k
    categories: tuple[str, ...]  # category fields of the prepared items (empty when there are none)
    task: str = "matching"  # train.task
    unclicked_rate: float = 1.0  # train.unclicked_rate: the share of unclicked rows ranking trained on


@dataclass(frozen=True)
class ScoredSplit:
    """What evaluation holds for a scored split, as numpy arrays; items are numbered as the engine numbers them.

    Per impression i: `labels[i]` (1 = clicked) and `scores[i]` over `candidates[i]` (item indices), and
    `histories[i]`, the items clicked before (no padding). Per item: `item_clicks` (training clicks, the
    popularity), `item_categories[field]` (category ids, 0 = none), `item_vectors` ((items, dim), or None when
    no metric asked for them or the model gives items no vector of their own, as NPA's).
    """

    labels: list[np.ndarray]
    scores: list[np.ndarray]
    candidates: list[np.ndarray]
    histories: list[np.ndarray]
    item_clicks: np.ndarray
    item_categories: dict[str, np.ndarray]
    item_vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def ranking(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, labels, shown), each `(impressions, most candidates)`: every impression's candidates best first,
        ordered exactly as MIND's evaluate.py orders them (`np.argsort(scores)[::-1]`, ties included), padded with
        item 0, label 0 and shown False."""
        import numpy as np

        lengths = np.array([len(c) for c in self.candidates], dtype=np.int64)
        shown = np.arange(int(lengths.max(initial=0))) < lengths[:, None]
        items = np.zeros(shown.shape, np.int64)
        labels = np.zeros(shown.shape)
        for row, (scores, candidates) in enumerate(zip(self.scores, self.candidates, strict=True)):
            order = np.argsort(scores)[::-1]
            items[row, : len(order)] = candidates[order]
            labels[row, : len(order)] = self.labels[row][order]
        return items, labels, shown

    def top(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, labels, shown), each `(len(rows), k)`: the k best-scored candidates of each of `rows`, padded
        where an impression has fewer than k."""
        import numpy as np

        parts = [a[rows, :k] for a in self.ranking]
        short = k - parts[0].shape[1]
        if short > 0:
            parts = [np.pad(a, ((0, 0), (0, short))) for a in parts]
        return parts[0], parts[1], parts[2]


class Metric(Protocol):
    """An evaluation metric, built as `implementation(options, MetricContext)`; a recipe lists it in eval.metrics.

    `columns` names what it reports (`ndcg@5`, `ndcg@10`: one per cut-off in eval.k where it has one).
    Called as `metric(split, rows)` for the impressions `rows` (indices into the `ScoredSplit`), it returns one
    entry per column: with `per_impression = True`, an array of one value per row (NaN where the metric is not
    defined, as AUC for an impression without a non-click), which the engine averages over the rows where it is
    defined; otherwise one number for the rows together (global AUC, catalogue coverage). Bootstrap intervals
    resample the rows; `bootstrap = False` says that resampling would bias the metric (a property of the set of
    lists, as coverage, which falls when resampling repeats impressions), and `once compare` then reports its
    value and difference without an interval or a p-value. `needs_vectors = True` asks the engine to fill
    `ScoredSplit.item_vectors`. `needs_labels = False` says the metric reads no clicks (a beyond-accuracy
    metric), so it can also measure the lists `once recommend --measure` gives; left out, it counts as True.
    """

    columns: tuple[str, ...]
    per_impression: bool
    bootstrap: bool
    needs_vectors: bool

    def __call__(self, split: ScoredSplit, rows: np.ndarray) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrackerContext:
    """What a tracker is built with, at the start of a run (rank 0 only)."""

    run_dir: Path  # the run directory (a tracker that writes files puts them here)
    run_name: str  # its folder name, e.g. demo-20261203-101500-ab12cd34
    recipe_name: str  # the recipe's short name (an experiment name)
    recipe: dict[str, Any]  # the fully resolved recipe, as `once recipe show` prints it
    fingerprint: str
    versions: dict[str, str]  # python, torch, once and every plugin distribution


class Tracker(Protocol):
    """An experiment tracker, built as `implementation(options, TrackerContext)`; a recipe lists it in `track`.

    Built when the run starts (it records the recipe, fingerprint and versions then). `step(step, values)`: every
    `every` optimizer steps (its option), the click loss, each auxiliary loss term, the learning rate and
    samples/s. `epoch(epoch, values)`: the epoch's training loss and dev metrics, keyed as shown
    (`epoch/train_loss`, `dev/auc`...). `finish(test,
    groups, artifacts)`: the test metrics, the metrics by group (`{group: {metric: value}}`) and the run's result
    files. `close()` last, also when training fails or is interrupted. A tracker that raises is reported once and
    turned off for the run; training goes on.
    """

    every: int

    def step(self, step: int, values: dict[str, float]) -> None: ...

    def epoch(self, epoch: int, values: dict[str, float]) -> None: ...

    def finish(self, test: dict[str, float], groups: dict[str, dict[str, float]], artifacts: list[Path]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class CachingEncoder(Protocol):
    """Optional, for an item encoder with frozen lower layers whose output `once cache` can store (DIRE)."""

    cache_dir: Path | None  # where its recipe wants the cache (None: keyed under $ONCE_CACHE/states)

    def cache_identity(self) -> dict[str, Any] | None:
        """What the cached states depend on besides the data (model files, cut layer, dtype); None: nothing frozen."""

    def frozen_states(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (n, tokens, hidden), mask (n, tokens)) entering the first trained layer, for item features."""

    def use_cache(self, cache: Any) -> None:
        """Read states from `cache` (a `once.api.StateCache`) from now on, or run the frozen layers again (None)."""
