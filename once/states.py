"""The hidden-state cache (`once cache`): a frozen language model's lower layers run once per item, on disk.

An item encoder whose lower layers are frozen (see `plugins/lm.py`) implements `CachingEncoder`. Its states for
every item are written in shards of `shard_items` items, each a memory-mapped `.npy` file written under a
temporary name and renamed when complete: a crash loses at most the shard being written, and building again
resumes after the last complete one. Training reads the rows it needs from the memory maps, so the cache never
has to fit in memory. The folder is keyed by the tokenized data (dataset, prompt template, tokenizer) and the
encoder's identity (model files, cut layer, dtype), so a changed template or model never reads a stale cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from once.data.prepare import PreparedData
from once.distributed import World
from once.errors import DataError
from once.files import LOCK, cache_root, disk_space, exclusive, map_array, write_json
from once.model import Recommender
from once.progress import progress_bar
from once.protocols import CachingEncoder

FORMAT = 1
SHARD_ITEMS = 4096
IDENTITY = "identity.json"


@dataclass
class StateCache:
    """Complete cached states: `lookup` gathers the rows of any items from the memory-mapped shards."""

    folder: Path
    shard_items: int
    width: int
    dtype: torch.dtype
    shards: list[np.ndarray]

    def lookup(self, items: torch.Tensor, width: int) -> torch.Tensor:
        """(n,) item indices -> (n, width, hidden) states, in the stored dtype, on the CPU."""
        index = items.cpu().numpy()
        shard, row = np.divmod(index, self.shard_items)
        first = self.shards[0]
        out = np.empty((len(index), width, first.shape[2]), dtype=first.dtype)
        for s in np.unique(shard):
            chosen = shard == s
            out[chosen] = self.shards[s][row[chosen], :width]
        tensor = torch.from_numpy(out)
        return tensor.view(torch.bfloat16) if self.dtype == torch.bfloat16 else tensor


def caching_encoder(model: Recommender) -> CachingEncoder | None:
    """The model's item encoder if it has frozen layers worth caching."""
    encoder = model.item_encoder
    if isinstance(encoder, CachingEncoder) and encoder.cache_identity() is not None:
        return encoder
    return None


def cache_folder(encoder: CachingEncoder, data: PreparedData) -> tuple[Path, dict[str, Any]]:
    identity = {"format": FORMAT, "data": data.key, "encoder": encoder.cache_identity()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return encoder.cache_dir or cache_root() / "states" / key, identity


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"states-{shard:05d}.npy"


def _check_identity(folder: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's layout record if it holds states for `identity`; None if it is new; an error otherwise."""
    path = folder / IDENTITY
    if not path.exists():
        if folder.exists() and any(p.name != LOCK for p in folder.iterdir()):
            raise DataError(
                "the state cache folder is not empty and holds no ONCE cache",
                where=str(folder),
                hint="Set model.item.cache_dir to an empty or new folder.",
            )
        return None
    try:
        record = json.loads(path.read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"damaged state cache record: {error}", where=str(path)) from None
    if record.get("identity") != identity:
        theirs, ours = record.get("identity", {}), identity
        differ = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
        encoder_differ = [
            k
            for k in sorted(set(theirs.get("encoder") or {}) | set(ours["encoder"]))
            if (theirs.get("encoder") or {}).get(k) != ours["encoder"].get(k)
        ]
        detail = ", ".join(f"encoder {k}" for k in encoder_differ) if encoder_differ else ", ".join(differ)
        raise DataError(
            f"this state cache was built for another model or data (differs in: {detail})",
            where=str(folder),
            hint="Point model.item.cache_dir at a new folder, or delete this one to rebuild it.",
        )
    return record


def open_cache(model: Recommender, data: PreparedData) -> StateCache | None:
    """The complete cache for this model and data, or None if it has not been built (fully)."""
    encoder = caching_encoder(model)
    if encoder is None:
        return None
    folder, identity = cache_folder(encoder, data)
    record = _check_identity(folder, identity)
    if record is None:
        return None
    shards = [_shard_path(folder, s) for s in range(record["shards"])]
    if not all(path.exists() for path in shards):
        return None
    return StateCache(
        folder,
        record["shard_items"],
        record["width"],
        getattr(torch, record["dtype"]),
        [map_array(path, f"Delete {path.name}; `once cache` writes it again.") for path in shards],
    )


def build_cache(
    model: Recommender,
    data: PreparedData,
    *,
    batch_size: int,
    device: torch.device,
    shard_items: int = SHARD_ITEMS,
    on_shard: Callable[[int], None] | None = None,
    world: World | None = None,
) -> StateCache:
    """Run the frozen layers over every item into the cache, resuming after the last complete shard. Under
    torchrun every rank writes its own shards (every size-th from its rank on) and rank 0 the identity file."""
    world = world or World()
    encoder = caching_encoder(model)
    if encoder is None:
        raise DataError(
            "this recipe's item encoder has no frozen layers to cache",
            hint="Caching needs an LM item encoder (bert, llama) with tune_layers below its number of layers.",
        )
    folder, identity = cache_folder(encoder, data)
    with exclusive(folder / LOCK, "this hidden-state cache") if world.main else contextlib.nullcontext():
        if world.main and _check_identity(folder, identity) is None:
            write_json(folder / IDENTITY, _layout(model, data, identity, shard_items))
        world.barrier()
        record = _check_identity(folder, identity)
        assert record is not None, "rank 0 wrote the identity"
        encoder.use_cache(None)
        model.eval()
        shards = world.shard(record["shards"]).tolist()
        todo = [s for s in shards if not _shard_path(folder, s).exists()]
        mine = sum(_shard_rows(record, s) for s in shards)
        with progress_bar(
            "{task.fields[rate]:.1f} items/s", console=Console(stderr=True, quiet=not world.main)
        ) as progress:
            task = progress.add_task("caching hidden states", total=mine, rate=0.0)
            progress.update(task, advance=mine - sum(_shard_rows(record, s) for s in todo))
            started, done = time.perf_counter(), 0

            def advance(items: int) -> None:
                nonlocal done
                done += items
                progress.update(task, advance=items, rate=done / (time.perf_counter() - started))

            for shard in todo:
                _write_shard(model, encoder, folder, record, shard, batch_size, device, advance)
                if on_shard:
                    on_shard(shard)
        world.barrier()
    cache = open_cache(model, data)
    assert cache is not None, "every shard was written"
    return cache


def _layout(model: Recommender, data: PreparedData, identity: dict[str, Any], shard_items: int) -> dict[str, Any]:
    """Shard size, token width, hidden size and dtype, from the item features and one probe item."""
    encoder = model.item_encoder
    features = model.item_features(torch.arange(data.num_items))
    width = max(
        int(v.shape[1]) for k, v in features.items() if k != "item" and v.dim() == 2 and not v.is_floating_point()
    )
    with torch.no_grad():
        probe, _ = encoder.frozen_states(model.item_features(torch.tensor([min(1, data.num_items - 1)])))
    return {
        "identity": identity,
        "items": data.num_items,
        "shard_items": shard_items,
        "shards": -(-data.num_items // shard_items),
        "width": width,
        "hidden": int(probe.shape[-1]),
        "dtype": str(probe.dtype).removeprefix("torch."),
    }


def _shard_rows(record: dict[str, Any], shard: int) -> int:
    return min(record["shard_items"], record["items"] - shard * record["shard_items"])


@torch.no_grad()
def _write_shard(
    model: Recommender,
    encoder: CachingEncoder,
    folder: Path,
    record: dict[str, Any],
    shard: int,
    batch_size: int,
    device: torch.device,
    advance: Callable[[int], None],
) -> None:
    rows, start = _shard_rows(record, shard), shard * record["shard_items"]
    bf16 = record["dtype"] == "bfloat16"
    dtype = np.int16 if bf16 else np.dtype(record["dtype"])
    path = _shard_path(folder, shard)
    tmp = path.with_name(f".{path.name}.tmp")
    with disk_space(path):  # a full disk: a clear error, and the shards written so far stay complete
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, record["width"], record["hidden"]))
        if hasattr(os, "posix_fallocate"):  # claim the space now: a sparse memory map would fail later, by SIGBUS
            with open(tmp, "rb+") as f:
                os.posix_fallocate(f.fileno(), 0, os.path.getsize(tmp))
        for begin in range(0, rows, batch_size):
            items = torch.arange(start + begin, start + min(begin + batch_size, rows), device=device)
            states, mask = encoder.frozen_states(model.item_features(items))
            states = torch.where(mask.unsqueeze(-1), states, 0)  # padding positions hold zeros, deterministically
            values = states.cpu().view(torch.int16) if bf16 else states.cpu()
            out[begin : begin + len(items)] = 0
            out[begin : begin + len(items), : values.shape[1]] = values.numpy()
            advance(len(items))
        out.flush()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        del out
    os.replace(tmp, path)


def attach_cache(
    model: Recommender,
    data: PreparedData,
    *,
    build: bool,
    batch_size: int,
    device: torch.device,
    world: World | None = None,
) -> None:
    """Let the item encoder read cached states if its recipe wants them: the existing cache, or (build) a new one."""
    encoder = caching_encoder(model)
    if encoder is None or not getattr(encoder, "wants_cache", True):
        return
    cache = open_cache(model, data)
    if cache is None and build:
        cache = build_cache(model, data, batch_size=batch_size, device=device, world=world)
    if cache is not None:
        encoder.use_cache(cache)
