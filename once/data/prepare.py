"""The tokenized cache: items as token-id tensors and impressions as ragged arrays, keyed by a hash of the inputs.

Built once per (data, tokenizer, item fields) and reused by every later run; any change to one of them gives
a new key, so a stale cache is never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from once.data.appending import AppendedArray, remap_in_place
from once.data.tables import Corpus, Items, Ragged, SplitSource
from once.errors import DataError
from once.files import building, cache_root, map_array, write_json
from once.progress import progress_bar, tracked
from once.protocols import Tokenizer
from once.recipe import ItemsSection, ResolvedRecipe, template_fields

log = logging.getLogger(__name__)
FORMAT_VERSION = 11


@dataclass
class Split:
    """One split, ready for batching: every id is an index."""

    impression_ids: np.ndarray  # str, memory-mapped (MIND-large: 15.8 million)
    user_ids: np.ndarray  # index into PreparedData.users (the model maps users unseen in training to 0 itself)
    history: Ragged
    candidates: Ragged
    labels: Ragged  # aligned with candidates; -1 = unlabeled
    real_history: np.ndarray  # history items per impression that the user really clicked (not generated)

    def __len__(self) -> int:
        return len(self.impression_ids)

    @property
    def labeled(self) -> bool:
        return bool((self.labels.values >= 0).all())


@dataclass
class PreparedData:
    """Everything the model and the training loop read, as tensors and arrays."""

    key: str
    folder: Path
    item_ids: list[str]  # index 0 is padding
    features: dict[str, torch.Tensor]  # text field -> (items, tokens); category -> (items,); vectors -> (items, dim)
    text_lengths: dict[str, int]
    category_sizes: dict[str, int]
    category_vocab: dict[str, list[str]]  # category field -> its values, "" (none, id 0) first
    users: list[str]  # every user id: "" first, then the users seen in training, then the others
    known_users: int  # users[:known_users] are "" and the training users: the model's user indices
    titles: list[str]  # each item's title (or first text field), for showing recommendations
    splits: dict[str, Split]
    vocab_size: int
    special_ids: tuple[int, ...]
    tokenizer_state: dict
    word_vectors: torch.Tensor | None
    notes: list[str]
    user_profiles: torch.Tensor | None = None  # (users, tokens): GENRE profile tokens per user, when merged
    entities: int = 0  # entity ids of the `<field>_entities` features, 0 (no entity) included
    entity_vectors: torch.Tensor | None = None  # (entities, dim): the dataset's pretrained entity vectors
    vector_dims: dict[str, int] = dataclasses.field(default_factory=dict)  # item vector fields -> dim

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


class Augmentation(Protocol):
    """A change to the corpus before it is tokenized, which `prepare` receives.

    GENRE's answers merged by the recipe's `augment` section are one (`once.genre.merge.GenreAnswers`, passed in
    by `once.assembly.load_data`); the data layer knows only this contract, never GENRE.
    """

    def fingerprint(self) -> list[str]:
        """What identifies the augmentation's inputs (it enters the cache key: a change rebuilds the cache)."""

    def apply(self, corpus: Corpus) -> Corpus:
        """The corpus with the augmentation merged in."""

    def profiles(self, users: list[str]) -> list[str] | None:
        """A profile text per user, aligned with `users`, or None when the augmentation has no profiles."""


def prepare(resolved: ResolvedRecipe, augmentation: Augmentation) -> PreparedData:
    """Load the tokenized cache for this recipe's data with `augmentation` applied, building it if it is missing."""
    dataset = resolved.build("dataset")
    tokenizer = resolved.build("tokenizer")
    recipe = resolved.recipe
    identity = {
        "format": FORMAT_VERSION,
        "code": [resolved.part(slot).provider for slot in ("dataset", "tokenizer")],  # plugin upgrades rebuild
        "dataset": resolved.data["dataset"]["name"],
        "data": dataset.fingerprint(),
        "tokenizer": resolved.data["tokenizer"],
        "tokenizer_files": tokenizer.fingerprint(),
        "items": resolved.data["items"],
        "augment": resolved.data["augment"],
        "augment_files": augmentation.fingerprint(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_root() / "tokenized" / key
    if not (folder / "meta.json").exists():
        log.info("tokenizing %s into %s", resolved.data["dataset"]["name"], folder)
        corpus = augmentation.apply(dataset.read())
        with building(folder) as tmp:
            _write(tmp, corpus, tokenizer, recipe.items, augmentation, recipe.augment.profile_tokens, identity)
    return _read(folder, key)


def _fill_template(items: Items, name: str, template: str) -> list[str]:
    """The text of a templated field for every item (row 0, the padding item, stays empty)."""
    if name in items.text or name in items.categories:
        raise DataError(
            f"recipe items.templates.{name}: the dataset already has a field '{name}'",
            hint="Give the templated field a new name, e.g. 'prompt'.",
        )
    columns = {**items.categories, **items.text}
    fields = template_fields(template)
    for field in fields:
        if field not in columns:
            raise DataError(
                f"recipe items.templates.{name} names the field '{field}', which this dataset does not have",
                hint=f"Fields: {', '.join(columns)}.",
            )
    values = [template.format_map({f: columns[f][row] for f in fields}) for row in range(len(items.ids))]
    values[0] = ""
    return values


def _write(
    folder: Path,
    corpus: Corpus,
    tokenizer: Tokenizer,
    items_section: ItemsSection,
    augmentation: Augmentation,
    profile_tokens: int,
    identity: dict,
) -> None:
    text, categories, templates = items_section.text, items_section.categories, items_section.templates
    linked = items_section.entities
    items = corpus.items
    for name, template in templates.items():
        items.text[name] = _fill_template(items, name, template)
    for field in text:
        if field not in items.text:
            raise DataError(
                f"recipe items.text names the field '{field}', which this dataset does not have",
                hint=f"Text fields: {', '.join(items.text)}.",
            )
    for field in categories:
        if field not in items.categories:
            raise DataError(
                f"recipe items.categories names the field '{field}', which this dataset does not have",
                hint=f"Category fields: {', '.join(items.categories) or 'none'}.",
            )
    for field in items_section.vectors:
        if field not in items.vectors:
            raise DataError(
                f"recipe items.vectors names the field '{field}', which this dataset does not have",
                hint=f"Vector fields: {', '.join(items.vectors) or 'none'} (EB-NeRD: dataset.embeddings).",
            )
        shape = items.vectors[field].shape
        if len(shape) != 2 or shape[0] != len(items.ids):
            raise DataError(
                f"the dataset's item vector field '{field}' has shape {shape}, not (items, dim) with "
                f"{len(items.ids)} items (the padding item included)"
            )
    codes = _UserCodes()
    for name, split in corpus.splits.items():  # first: the user list (and GENRE's profiles) come from them
        _write_split(folder / name, split, codes, training=name == "train")
    users, known_users = codes.ordered(folder, list(corpus.splits))
    profiles = augmentation.profiles(users)
    fit_rows = np.flatnonzero(items.in_train)
    tokenizer.fit(
        chain(
            (items.text[field][i] for field in text for i in fit_rows),
            profiles[1:known_users] if profiles else (),
        )
    )
    features: dict[str, torch.Tensor] = {}
    for field, length in text.items():
        texts = [None, *items.text[field][1:]]  # row 0 is the padding item
        features[field] = _token_matrix(texts, tokenizer, length, f"tokenizing {field}")
    category_vocab = {}
    for field in categories:
        values = items.categories[field]
        vocab = [""] + sorted({v for v in values if v})
        index = {v: i for i, v in enumerate(vocab)}
        features[field] = torch.tensor([index.get(v, 0) for v in values], dtype=torch.int32)
        category_vocab[field] = vocab
    for field in items_section.vectors:
        features[field] = torch.from_numpy(np.ascontiguousarray(items.vectors[field], dtype=np.float32))
    entity_ids = _entity_features(features, items, linked, tokenizer, text) if linked else []
    save_file(features, str(folder / "items.safetensors"))
    if linked and items.entity_vectors:
        save_file({"vectors": _entity_matrix(entity_ids, items.entity_vectors)}, str(folder / "entities.safetensors"))
    vectors = tokenizer.word_vectors()
    if vectors is not None:
        save_file({"vectors": vectors.contiguous()}, str(folder / "vectors.safetensors"))
    if profiles is not None:
        texts = [profile or None for profile in profiles]  # users without a profile: all padding
        matrix = _token_matrix(texts, tokenizer, profile_tokens, "tokenizing profiles")
        save_file({"profiles": matrix}, str(folder / "users.safetensors"))
    write_json(
        folder / "meta.json",
        {
            "identity": identity,
            "item_ids": items.ids,
            "text_lengths": text,
            "category_vocab": category_vocab,
            "vector_dims": {field: int(features[field].shape[1]) for field in items_section.vectors},
            "users": users,
            "known_users": known_users,
            "titles": items.text["title" if "title" in items.text else next(iter(items.text))],
            "splits": list(corpus.splits),
            "vocab_size": tokenizer.vocab_size,
            "special_ids": list(tokenizer.special_ids),
            "tokenizer": tokenizer.state(),
            "entity_ids": entity_ids,
            "notes": corpus.notes,
        },
    )


def new_item_features(
    data: PreparedData, items_section: ItemsSection, tokenizer: Tokenizer, rows: list[dict[str, str]]
) -> dict[str, torch.Tensor]:
    """The features of items the data does not have (each a dict of its fields' texts), made as the cache made
    the data's own: templates filled, text tokenized to the same lengths by the restored tokenizer, categories
    by the data's vocabulary (a value it lacks reads as none), entity features empty (no linker runs here).
    Every field of a row must be one the run reads; an error names any other. A run that reads item vector
    fields (items.vectors) cannot take new items: a posted item has text, not the dataset's pretrained vector."""
    if items_section.vectors:
        raise DataError(
            f"this run reads pretrained item vectors (items.vectors: {', '.join(items_section.vectors)}), which a new "
            "item cannot carry",
            hint="Serve a model whose item encoder reads text to add items.",
        )
    wanted = source_fields(items_section)
    for number, row in enumerate(rows):
        unknown = sorted(set(row) - wanted)
        if unknown:
            raise DataError(
                f"item {number} has field(s) {', '.join(unknown)}, which this run does not read",
                hint=f"Fields this run reads: {', '.join(sorted(wanted))}.",
            )
    text = {field: [row.get(field, "") for row in rows] for field in wanted - set(items_section.categories)}
    for name, template in items_section.templates.items():
        text[name] = [template.format_map({f: row.get(f, "") for f in template_fields(template)}) for row in rows]
    features: dict[str, torch.Tensor] = {}
    for field, length in data.text_lengths.items():
        values = [value or None for value in text.get(field, [""] * len(rows))]
        features[field] = _token_matrix(values, tokenizer, length, f"tokenizing {field}").long()
    for field, vocab in data.category_vocab.items():
        index = {value: i for i, value in enumerate(vocab)}
        features[field] = torch.tensor([index.get(row.get(field, ""), 0) for row in rows], dtype=torch.long)
    for field in items_section.entities:
        features[f"{field}_entities"] = torch.zeros_like(features[field])
    return features


def source_fields(items_section: ItemsSection) -> set[str]:
    """The dataset fields a recipe's items are made from: its text fields (templates: the fields they name) and
    its category fields."""
    fields = set(items_section.categories)
    for field in items_section.text:
        template = items_section.templates.get(field)
        fields.update(template_fields(template) if template is not None else [field])
    for template in items_section.templates.values():
        fields.update(template_fields(template))
    return fields


def _entity_features(
    features: dict[str, torch.Tensor], items: Items, fields: list[str], tokenizer: Tokenizer, text: dict[str, int]
) -> list[str]:
    """Add `<field>_entities` (items, tokens) for each field: at every token of an entity's surface form, that
    entity's index (0: no entity). Returns the entity ids, "" (index 0) first.

    An entity is kept when a training item links it or the dataset has a vector for it; the others read as no
    entity, as an unseen word reads as unknown. A surface form is found in the field's tokens by tokenizing it
    alone; the first occurrence not yet taken is marked (a form the truncated text lacks marks nothing)."""
    for field in fields:
        if not any(items.entities.get(field, [])):
            raise DataError(
                f"recipe items.entities names '{field}', but no item of this dataset links an entity in it",
                hint=f"Fields with entities here: {', '.join(f for f, v in items.entities.items() if any(v)) or 'none'}"
                ". MIND's news.tsv links entities in the title and abstract.",
            )
    kept = {e for e in items.entity_vectors}
    for field in fields:
        kept.update(entity for row in np.flatnonzero(items.in_train) for entity, _ in items.entities[field][row])
    entity_ids = ["", *sorted(kept)]
    index = {entity: i for i, entity in enumerate(entity_ids)}
    specials = set(tokenizer.special_ids)
    for field in fields:
        tokens = features[field]
        aligned = torch.zeros_like(tokens)
        for row, mentions in tracked(enumerate(items.entities[field]), len(items.ids), f"aligning {field} entities"):
            row_tokens = tokens[row].tolist()
            for entity, surface in mentions:
                if entity not in index:
                    continue
                form = tokenizer.encode(surface, text[field])
                while form and form[0] in specials:  # a subword tokenizer's [CLS] ... [SEP]
                    form = form[1:]
                while form and form[-1] in specials:
                    form = form[:-1]
                _mark(row_tokens, aligned[row], form, index[entity])
        features[f"{field}_entities"] = aligned
    return entity_ids


def _mark(tokens: list[int], aligned: torch.Tensor, form: list[int], entity: int) -> None:
    """Mark the first run of `form` in `tokens` that no entity has taken yet."""
    width = len(form)
    for start in range(len(tokens) - width + 1 if width else 0):
        if tokens[start : start + width] == form and not aligned[start : start + width].any():
            aligned[start : start + width] = entity
            return


def _entity_matrix(entity_ids: list[str], vectors: dict[str, np.ndarray]) -> torch.Tensor:
    """(entities, dim) pretrained vectors; row 0 (no entity) is zero, an entity without a vector gets a small
    random row (seeded), as a word missing from the word vectors does."""
    dim = len(next(iter(vectors.values())))
    matrix = torch.randn(len(entity_ids), dim, generator=torch.Generator().manual_seed(0)) * 0.1
    matrix[0] = 0
    for row, entity in enumerate(entity_ids[1:], 1):
        if entity in vectors:
            matrix[row] = torch.from_numpy(vectors[entity])
    return matrix


def _token_matrix(texts: list[str | None], tokenizer: Tokenizer, length: int, description: str) -> torch.Tensor:
    """(len(texts), length) token ids, left-aligned and padded with 0; rows whose text is None stay all padding."""
    matrix = np.zeros((len(texts), length), dtype=np.int32)
    for row, value in tracked(enumerate(texts), len(texts), description):
        ids = tokenizer.encode(value, length)[:length] if value is not None else []
        matrix[row, : len(ids)] = ids
    return torch.from_numpy(matrix)


class _UserCodes:
    """User ids -> codes in the order they are first met, while the splits stream to disk; `ordered` then gives
    the final order ("" first, the training users sorted, then the others sorted) and rewrites the stored codes."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.training: set[str] = set()

    def of(self, user_ids: Sequence[str], training: bool) -> np.ndarray:
        seen = set(user_ids)
        for user in sorted(seen - self.codes.keys()):
            self.codes[user] = len(self.codes)
        if training:
            self.training |= seen
        return np.fromiter(map(self.codes.__getitem__, user_ids), np.int64, count=len(user_ids))

    def ordered(self, folder: Path, splits: list[str]) -> tuple[list[str], int]:
        """(every user, how many of them are "" and the training users), each split's user codes rewritten."""
        users = ["", *sorted(self.training), *sorted(self.codes.keys() - self.training)]
        index = {user: i for i, user in enumerate(users)}
        final = np.zeros(len(self.codes), np.int64)
        for user, code in self.codes.items():
            final[code] = index[user]
        for name in splits:
            remap_in_place(folder / name / "user_ids.npy", final)
        return users, len(self.training) + 1


def _write_split(folder: Path, split: SplitSource, users: _UserCodes, training: bool) -> None:
    """One split as contiguous .npy arrays in `folder`, appended part by part (a streamed split never lies whole
    in memory), read back as memory maps (shared by every process). A history table that parts share (the same
    arrays, with a row map: one row per user) is stored once, however other parts come between them.

    A part's arrays are written on a thread of their own (numpy's file writes release the GIL) while this one codes
    the part's user ids, a Python pass over every impression; the writes end before the next part is taken."""
    folder.mkdir()
    arrays = {
        name: AppendedArray(folder / f"{name}.npy", dtype)
        for name, dtype in (
            ("impression_ids", str),
            ("user_ids", np.int64),
            ("history.values", np.int32),
            ("history.offsets", np.int64),
            ("candidates.values", np.int32),
            ("candidates.offsets", np.int64),
            ("labels.values", np.int8),
            ("real_history", np.int64),
        )
    }
    arrays["history.offsets"].append(np.zeros(1, np.int64))
    arrays["candidates.offsets"].append(np.zeros(1, np.int64))
    tables: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}  # id of a stored table's values -> it, its first row
    written = stored = history_values = candidate_values = 0  # impressions, history rows and values, candidates
    try:
        with progress_bar() as progress, ThreadPoolExecutor(1) as writer:
            task = progress.add_task(f"writing {folder.name}", total=len(split))
            writes: list[Future] = []  # the part's

            def append(name: str, values: np.ndarray) -> None:
                writes.append(writer.submit(arrays[name].append, values))

            for part in split.parts():
                history = part.history
                values, offsets = history.values, history.offsets.astype(np.int64, copy=False)
                known = tables.get(id(values)) if history.rows is not None else None
                if known is not None and known[1] is history.offsets:  # a table an earlier part stored
                    base = known[2]
                else:
                    first, last = int(offsets[0]), int(offsets[-1])
                    append("history.values", values[first:last])
                    append("history.offsets", offsets[1:] - first + history_values)
                    history_values += last - first
                    base, stored = stored, stored + len(offsets) - 1
                    if history.rows is not None:
                        tables[id(values)] = (values, history.offsets, base)  # held: its id stays its own
                if history.rows is not None and "history.rows" not in arrays:  # the parts before: a row each
                    arrays["history.rows"] = AppendedArray(folder / "history.rows.npy", np.int64)
                    append("history.rows", np.arange(written))
                if "history.rows" in arrays:
                    append("history.rows", history.rows + base if history.rows is not None else np.arange(base, stored))
                written += len(part)
                append("impression_ids", np.asarray(part.impression_ids, dtype=str))
                offsets = part.candidates.offsets.astype(np.int64, copy=False)
                first, last = int(offsets[0]), int(offsets[-1])
                append("candidates.values", part.candidates.values[first:last])
                append("candidates.offsets", offsets[1:] - first + candidate_values)
                candidate_values += last - first
                append("labels.values", part.labels.values[first:last])
                append("real_history", history.lengths - (0 if part.synthetic is None else part.synthetic))
                append("user_ids", users.of(part.user_ids, training))
                for write in writes:
                    write.result()
                writes.clear()
                progress.advance(task, len(part))
    except BaseException:  # the writer has stopped: leaving the `with` waited for it
        for array in arrays.values():
            array.abandon()
        raise
    for array in arrays.values():
        array.close()


def _read(folder: Path, key: str) -> PreparedData:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf8"))
    features = {  # token and category ids as int64, vectors as stored (float32)
        k: v if v.is_floating_point() else v.long() for k, v in load_file(str(folder / "items.safetensors")).items()
    }
    vectors_file = folder / "vectors.safetensors"
    entities_file = folder / "entities.safetensors"
    profiles_file = folder / "users.safetensors"
    splits = {}
    for name in meta["splits"]:
        rebuild = f"Delete {folder}; the next run tokenizes the data again."
        t = {path.stem: map_array(path, rebuild) for path in (folder / name).glob("*.npy")}
        candidates = Ragged(t["candidates.values"], t["candidates.offsets"])
        splits[name] = Split(
            t["impression_ids"],
            t["user_ids"],
            Ragged(t["history.values"], t["history.offsets"], t.get("history.rows")),
            candidates,
            Ragged(t["labels.values"], candidates.offsets),
            t["real_history"],
        )
    return PreparedData(
        key=key,
        folder=folder,
        item_ids=meta["item_ids"],
        features=features,
        text_lengths=meta["text_lengths"],
        category_sizes={f: len(v) for f, v in meta["category_vocab"].items()},
        category_vocab=meta["category_vocab"],
        users=meta["users"],
        known_users=meta["known_users"],
        titles=meta["titles"],
        splits=splits,
        vocab_size=meta["vocab_size"],
        special_ids=tuple(meta["special_ids"]),
        tokenizer_state=meta["tokenizer"],
        word_vectors=load_file(str(vectors_file))["vectors"] if vectors_file.exists() else None,
        notes=meta["notes"],
        user_profiles=load_file(str(profiles_file))["profiles"].long() if profiles_file.exists() else None,
        entities=len(meta["entity_ids"]),
        entity_vectors=load_file(str(entities_file))["vectors"] if entities_file.exists() else None,
        vector_dims=meta["vector_dims"],
    )
