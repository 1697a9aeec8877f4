"""Checkpoints in safetensors (never pickle): model weights, and the full training state for resuming."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from once.errors import OnceError
from once.files import write_atomic

CHECKSUM, FINGERPRINT = "sha256", "recipe_fingerprint"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Atomically write tensors, with JSON-able metadata and a checksum of the tensors in the safetensors header."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {key: json.dumps(value) for key, value in {**(metadata or {}), CHECKSUM: checksum(tensors)}.items()}
    write_atomic(path, save(tensors, metadata=header))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a file `save_tensors` wrote, refusing one whose tensors fail their checksum."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = {key: json.loads(value) for key, value in (f.metadata() or {}).items()}
        tensors = load_file(str(path))
    except (SafetensorError, json.JSONDecodeError) as error:
        raise OnceError(f"damaged checkpoint: {error}", where=str(path)) from None
    written = metadata.pop(CHECKSUM, None)
    if written is not None and written != checksum(tensors):  # files from before checksums have none
        raise OnceError(
            "damaged checkpoint: its tensors do not match the checksum written with them",
            where=str(path),
            hint="The file was changed or corrupted after it was written; use another copy, or train again.",
        )
    return tensors, metadata


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of tensors."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: trainable parameters and persistent buffers.

    Frozen parameters (a pretrained language model's weights) are not saved: building the model from its recipe
    loads them again, so a checkpoint of a LoRA-tuned 7B encoder holds megabytes, not gigabytes.
    """
    persistent = model.state_dict(keep_vars=True).keys()
    state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    state.update((name, b) for name, b in model.named_buffers() if name in persistent)
    return state


def load_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load what `model_state` saved; RuntimeError if names or shapes differ."""
    expected = model_state(model).keys()
    missing, unexpected = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
    if missing or unexpected:
        raise RuntimeError(
            f"missing {', '.join(missing[:3]) or 'nothing'}; unexpected {', '.join(unexpected[:3]) or 'nothing'}"
        )
    model.load_state_dict(tensors, strict=False)


def save_model(path: Path, model: torch.nn.Module, fingerprint: str | None = None) -> None:
    """The model's weights, tagged with the fingerprint of the recipe that built it."""
    save_tensors(path, model_state(model), {FINGERPRINT: fingerprint} if fingerprint else None)


def load_model(path: Path, model: torch.nn.Module, fingerprint: str | None = None) -> None:
    """Load weights, refusing a checkpoint of another recipe (when `fingerprint` is given) or whose names or shapes
    do not fit the model the recipe builds."""
    if not path.is_file():
        raise OnceError("checkpoint not found", where=str(path), hint="Was the run interrupted before its first epoch?")
    tensors, metadata = load_tensors(path)
    _check_fingerprint(path, metadata, fingerprint)
    try:
        load_model_state(model, tensors)
    except RuntimeError as error:
        raise OnceError(
            f"the checkpoint does not fit the model its recipe builds: {str(error).splitlines()[0]}",
            where=str(path),
            hint="Were plugins upgraded since the run? Use the versions listed in run.json.",
        ) from None


def _check_fingerprint(path: Path, metadata: dict[str, Any], fingerprint: str | None) -> None:
    written = metadata.get(FINGERPRINT)
    if fingerprint and written and written != fingerprint:
        raise OnceError(
            f"this checkpoint was trained with another recipe (fingerprint {written}, this recipe's is {fingerprint})",
            where=str(path),
            hint="Load it with the recipe.yaml of its own run directory.",
        )


def save_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer: dict[str, Any],
    fingerprint: str | None = None,
) -> None:
    """Everything a resumed run needs: weights, optimizer moments, scheduler and trainer bookkeeping."""
    tensors = {f"model.{k}": v for k, v in model_state(model).items()}
    optimizer_state = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for param, values in optimizer_state["state"].items():
        plain_state[str(param)] = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param}.{name}"] = value
            else:
                plain_state[str(param)][name] = value
    metadata = {
        "optimizer": {"param_groups": optimizer_state["param_groups"], "state": plain_state},
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "trainer": trainer,
        **({FINGERPRINT: fingerprint} if fingerprint else {}),
    }
    save_tensors(path, tensors, metadata)


def load_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Restore what `save_training_state` wrote; returns the trainer bookkeeping."""
    tensors, metadata = load_tensors(path)
    _check_fingerprint(path, metadata, fingerprint)
    load_model_state(model, {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {
        int(param): dict(values) for param, values in metadata["optimizer"]["state"].items()
    }
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param, name = key.split(".", 2)
            state.setdefault(int(param), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": metadata["optimizer"]["param_groups"]})
    scheduler.load_state_dict({**metadata["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    return metadata["trainer"]
