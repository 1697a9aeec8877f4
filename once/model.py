"""The recommender: item encoder -> user encoder -> click predictor, each a plugin."""

from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from once.data.prepare import PreparedData
from once.errors import OnceError, RecipeError
from once.nn import word_embedding
from once.protocols import BuildContext, Pairs
from once.recipe import ResolvedRecipe

# What one more call of the item encoder costs, in tokens encoded, on CPU: a batch's distinct items are encoded in
# groups of similar length (`length_groups`) when that saves more padded tokens than the calls cost. Measured on
# 2 cores (docs/benchmarks.md, "Items grouped by length"): of 32 to 4,096, 256 was the fastest or within 5% of it
# for NRMS, NAML and LSTUR on both corpora. Not measured on a GPU, where padded positions are nearly free and each
# call is a round of kernel launches: there the items go in one call, as before.
CALL_COST_IN_TOKENS = {"cpu": 256}


def length_groups(lengths: np.ndarray, call_cost: float) -> list[int]:
    """Where to cut ascending `lengths` into groups so that sum(size x longest) + call_cost x groups, the padded
    positions encoded plus the calls' cost, is least: the groups' exclusive ends. Exact over cuts between distinct
    lengths (dynamic programming over them)."""
    values = np.unique(lengths)
    ends = np.searchsorted(lengths, values, side="right")  # ends[j]: the items no longer than values[j]
    starts = np.concatenate([[0], ends[:-1]])
    best, cut_before = np.zeros(len(values) + 1), np.zeros(len(values) + 1, dtype=np.int64)
    for j in range(1, len(values) + 1):  # best[j]: the cost of the items no longer than values[j - 1]
        costs = best[:j] + (ends[j - 1] - starts[:j]) * max(int(values[j - 1]), 1) + call_cost
        cut_before[j] = int(np.argmin(costs))
        best[j] = costs[cut_before[j]]
    cuts, j = [], len(values)
    while j > 0:
        cuts.append(int(ends[j - 1]))
        j = int(cut_before[j])
    return cuts[::-1]


class Recommender(nn.Module):
    """Scores candidates for users from item content.

    The parts follow the contracts of `once.protocols` (ItemEncoder, UserEncoder, Predictor).
    """

    def __init__(
        self,
        item_encoder: nn.Module,
        user_encoder: nn.Module,
        predictor: nn.Module,
        features: dict[str, torch.Tensor],
        known_users: int,
        profiles: ProfileFusion | None = None,
    ) -> None:
        super().__init__()
        self.item_encoder, self.user_encoder, self.predictor = item_encoder, user_encoder, predictor
        self.profiles = profiles
        self.known_users = known_users
        self.unique_items = True  # False encodes every occurrence (the straightforward path bench/ compares with)
        self.fields = sorted(features)
        for field in self.fields:  # moved with the model, never saved in checkpoints
            self.register_buffer(f"feature_{field}", features[field], persistent=False)

    @property
    def user_conditioned(self) -> bool:
        """Whether the item encoder reads the user (NPA): then an item has no vector of its own."""
        return bool(getattr(self.item_encoder, "user_conditioned", False))

    def _seen(self, users: torch.Tensor) -> torch.Tensor:
        """User indices as the parts see them: users unseen in training become user 0."""
        return torch.where(users < self.known_users, users, torch.zeros_like(users))

    def encode_items(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) item indices -> (n, item_dim); a user-conditioned item encoder also needs the (n,) reader of each."""
        features = self.item_features(items)
        if self.user_conditioned:
            if users is None:
                raise OnceError(
                    "this model's item vectors depend on the user reading them (a user-conditioned item encoder): "
                    "items have no vectors of their own",
                    hint="Score with the full model (once eval works), or use another item encoder.",
                )
            features["user"] = self._seen(users)
        return self.item_encoder(features)

    def encode_distinct_items(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """`encode_items` for a batch's distinct items, in groups of similar length, each trimmed to its own
        longest text, where the item encoder encodes each item apart (`independent_items`) and the device has a
        call cost (`CALL_COST_IN_TOKENS`); in one call otherwise. The vectors are those of one call, in order."""
        call_cost = CALL_COST_IN_TOKENS.get(items.device.type)
        if call_cost is None or not getattr(self.item_encoder, "independent_items", False) or len(items) < 2:
            return self.encode_items(items, users)
        counts = self.token_counts(items).numpy()
        order = np.argsort(counts, kind="stable")
        cuts = length_groups(counts[order], call_cost)
        if len(cuts) == 1:
            return self.encode_items(items, users)
        order = torch.from_numpy(order).to(items.device)
        items, users = items[order], None if users is None else users[order]
        bounds = zip([0, *cuts[:-1]], cuts, strict=True)
        vectors = torch.cat([self.encode_items(items[a:b], None if users is None else users[a:b]) for a, b in bounds])
        return torch.empty_like(vectors).index_copy_(0, order, vectors)

    def item_features(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the item encoder reads for (n,) item indices: their fields, and the indices as "item"."""
        features = {"item": items}
        for field in self.fields:
            values = getattr(self, f"feature_{field}")[items]
            if values.dim() == 2 and not values.is_floating_point():  # token ids (not item vectors): drop the
                # trailing columns that are padding for every item here
                used = (values != 0).any(0).nonzero()
                values = values[:, : int(used.max()) + 1 if len(used) else 1]
            features[field] = values
        return features

    @property
    def num_items(self) -> int:
        return len(getattr(self, f"feature_{self.fields[0]}"))

    def token_counts(self, items: torch.Tensor) -> torch.Tensor:
        """(n,) tokens of each item over its text fields: how long encoding it takes."""
        counts = torch.zeros(len(items), dtype=torch.long)
        for field in self.fields:
            values = getattr(self, f"feature_{field}")
            if values.dim() == 2 and not values.is_floating_point():  # token ids, not item vectors
                counts += (values[items.to(values.device)] != 0).sum(1).cpu()
        return counts

    @property
    def candidate_aware(self) -> bool:
        """Whether the user encoder reads the candidates (then no user has one vector that could be cached)."""
        return bool(getattr(self.user_encoder, "candidate_aware", False))

    def encode_users(
        self,
        history_vectors: torch.Tensor,
        history: torch.Tensor,
        users: torch.Tensor,
        candidate_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, history) item indices with their (batch, history, item_dim) vectors, and (batch,) user indices
        (into PreparedData.users) -> (batch, user_dim); (batch, K, user_dim) from a multi-interest user encoder;
        (batch, candidates, user_dim) from a candidate-aware one, which needs `candidate_vectors`. User encoders
        see users unseen in training as user 0."""
        seen = self._seen(users)
        if self.candidate_aware:
            if candidate_vectors is None:
                raise OnceError("this model's users depend on the candidates: there is no vector per user alone")
            return self.user_encoder(history_vectors, history != 0, seen, candidate_vectors)
        vectors = self.user_encoder(history_vectors, history != 0, seen)
        return vectors if self.profiles is None else self.profiles(vectors, users)

    @property
    def attends_history(self) -> bool:
        """Whether the predictor reads the history's item vectors (DIN) beside the user vector."""
        return bool(getattr(self.predictor, "attends_history", False))

    def predict(
        self,
        user_vectors: torch.Tensor,
        candidate_vectors: torch.Tensor,
        users: torch.Tensor,
        candidates: torch.Tensor,
        history: torch.Tensor,
        history_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, candidates) scores from user vectors and candidate vectors, with the rows' users, candidate items
        and history; `history_vectors` is needed when the predictor attends to the history."""
        if self.attends_history and history_vectors is None:
            raise OnceError("this model's predictor attends to the history: its item vectors are needed")
        pairs = Pairs(self._seen(users), candidates, history, history_vectors if self.attends_history else None)
        return self.predictor(user_vectors, candidate_vectors, pairs)

    def score_vectors(
        self,
        history_vectors: torch.Tensor,
        history: torch.Tensor,
        users: torch.Tensor,
        candidate_vectors: torch.Tensor,
        candidates: torch.Tensor,
    ) -> torch.Tensor:
        """(batch, candidates) scores from item vectors already computed (fast evaluation, serving), for the
        (batch, candidates) item indices `candidates`."""
        user_vectors = self.encode_users(history_vectors, history, users, candidate_vectors)
        return self.predict(user_vectors, candidate_vectors, users, candidates, history, history_vectors)

    def auxiliary_losses(self) -> dict[str, torch.Tensor]:
        """The named, weighted loss terms the parts computed in their last training forward (TANR's topic loss,
        MINER's disagreement term...): parts that define `auxiliary_losses()` (docs/plugins.md)."""
        terms: dict[str, torch.Tensor] = {}
        for part in (self.item_encoder, self.user_encoder, self.predictor):
            for name, term in (part.auxiliary_losses() if hasattr(part, "auxiliary_losses") else {}).items():
                if name in terms:
                    raise RecipeError(f"two parts of the model add a loss term named '{name}'", where="model")
                terms[name] = term
        return terms

    def forward(
        self, history: torch.Tensor, candidates: torch.Tensor, users: torch.Tensor, with_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(batch, history) and (batch, candidates) item indices, (batch,) users -> (batch, candidates) scores.

        `with_terms` (training) also returns the parts' auxiliary loss terms: as outputs of the forward, DDP sees
        the parameters that only they use (TANR's topic classifier) as used.
        """
        scores = self._scores(history, candidates, users)
        return (scores, self.auxiliary_losses()) if with_terms else scores

    def _scores(self, history: torch.Tensor, candidates: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        batch, length = history.shape
        occurrences = torch.cat([history.flatten(), candidates.flatten()])
        readers = None
        if self.user_conditioned:  # an item is encoded once per (reader, item) pair of the batch
            readers = torch.cat([users.repeat_interleave(length), users.repeat_interleave(candidates.shape[1])])
        if self.unique_items:  # encode each distinct item (or reader and item) of the batch once, padding included
            items = self.num_items
            keys = occurrences if readers is None else readers * items + occurrences
            unique, inverse = torch.unique(keys, return_inverse=True)
            vectors = self.encode_distinct_items(unique % items, None if readers is None else unique // items)
        else:
            vectors = self.encode_items(occurrences, readers)
            inverse = torch.arange(len(occurrences), device=history.device)
        history_vectors = vectors[inverse[: batch * length]].view(batch, length, -1)
        candidate_vectors = vectors[inverse[batch * length :]].view(*candidates.shape, -1)
        return self.score_vectors(history_vectors, history, users, candidate_vectors, candidates)


def item_clicks(data: PreparedData) -> torch.Tensor:
    """How often each item was clicked in the training split."""
    train = data.splits["train"]
    clicked = train.candidates.values[train.labels.values == 1]
    return torch.bincount(torch.from_numpy(clicked), minlength=data.num_items).float()


def build_recommender(resolved: ResolvedRecipe, data: PreparedData) -> Recommender:
    """Instantiate the recipe's item encoder, user encoder and predictor for this data."""
    context = BuildContext(
        vocab_size=data.vocab_size,
        special_ids=data.special_ids,
        word_vectors=data.word_vectors,
        text_lengths=data.text_lengths,
        category_sizes=data.category_sizes,
        num_users=data.known_users,
        item_features=data.features,
        item_clicks=item_clicks(data),
        tokenizer=data.tokenizer_state,
        entities=data.entities,
        entity_vectors=data.entity_vectors,
        vector_dims=data.vector_dims,
    )
    item_encoder = resolved.build("model", "item", context=context)
    context = replace(context, item_dim=item_encoder.dim)
    user_encoder = resolved.build("model", "user", context=context)
    vectors = getattr(user_encoder, "vectors", 1)  # K > 1: a multi-interest user encoder, (batch, K, dim)
    aware = bool(getattr(user_encoder, "candidate_aware", False))  # (batch, candidates, dim)
    context = replace(context, user_dim=user_encoder.dim, user_vectors=vectors, candidate_aware_users=aware)
    predictor = resolved.build("model", "predictor", context=context)
    check_predictor_signature(predictor, resolved.part("model", "predictor").name)
    task, tasks = resolved.recipe.train.task, getattr(predictor, "tasks", ("matching", "ranking"))
    if task not in tasks:
        name = resolved.part("model", "predictor").name
        raise RecipeError(
            f"the predictor '{name}' (model.predictor) trains under train.task: {' or '.join(tasks)} only, and the "
            f"recipe sets train.task: {task}",
            where="model.predictor",
            hint=f"Set train.task: {tasks[0]}, or choose a predictor that trains under {task} (the built-in ones "
            "train under both).",
        )
    profiles = None
    if data.user_profiles is not None:
        if vectors > 1 or aware:
            raise RecipeError(
                "GENRE profiles are fused into one user vector, but this user encoder gives several per user",
                where="augment.profiles",
                hint="Use a single-vector user encoder with profiles, or leave augment.profiles out.",
            )
        profiles = ProfileFusion(data.user_profiles, data.vocab_size, user_encoder.dim, data.word_vectors)
    return Recommender(item_encoder, user_encoder, predictor, data.features, data.known_users, profiles)


def check_predictor_signature(predictor: nn.Module, name: str) -> None:
    """A predictor written for the contract before `Pairs` (two arguments) is an error that says what changed."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = inspect.signature(predictor.forward).parameters.values()
    if (
        any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters)
        or sum(p.kind in kinds for p in parameters) >= 3
    ):
        return
    raise RecipeError(
        f"the predictor '{name}' takes (users, candidates); predictors now also receive the rows' Pairs",
        where="model.predictor",
        hint="Define forward(self, users, candidates, pairs) (once.api.Pairs; docs/plugins.md), or update the "
        "plugin package that provides it.",
    )


class ProfileFusion(nn.Module):
    """GENRE's user profiles in the user vector, as the paper does: the profile's token embeddings, mean-pooled,
    concatenated with the user encoder's vector and projected back to its size. Users without a profile
    contribute a zero profile vector."""

    def __init__(
        self, profiles: torch.Tensor, vocab_size: int, user_dim: int, word_vectors: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.register_buffer("tokens", profiles, persistent=False)  # (users, tokens), rebuilt from the data
        dim = word_vectors.shape[1] if word_vectors is not None else user_dim
        self.embedding = word_embedding(vocab_size, dim, word_vectors, "augment.profiles")
        self.project = nn.Linear(user_dim + dim, user_dim)

    def forward(self, vectors: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens[users]
        mask = (tokens != 0).unsqueeze(-1).float()
        pooled = (self.embedding(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.project(torch.cat([vectors, pooled], dim=-1))


def parameter_groups(model: nn.Module, lr: float) -> list[dict]:
    """Trainable parameters grouped by learning rate, for the optimizer.

    A part may set `learning_rates = {submodule name: lr}` to train some of its submodules at their own rate
    (a pretrained language model tuned more gently than the layers on top of it); the rest use `lr`.
    """
    rates: dict[int, float] = {}
    for module in model.modules():
        for name, rate in getattr(module, "learning_rates", {}).items():
            rates.update((id(p), rate) for p in module.get_submodule(name).parameters())
    groups: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(rates.get(id(p), lr), []).append(p)
    return [{"params": params, "lr": rate} for rate, params in groups.items()]
