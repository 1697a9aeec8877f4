"""Checkpoints in safetensors (never pickle): model weights, and the full training state for resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from once.data.files import write_atomic
from once.errors import OnceError


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Atomically write tensors, with JSON-able metadata stored in the safetensors header."""
    header = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    write_atomic(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=header))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = {key: json.loads(value) for key, value in (f.metadata() or {}).items()}
        return load_file(str(path)), metadata
    except (SafetensorError, json.JSONDecodeError) as error:
        raise OnceError(f"damaged checkpoint: {error}", where=str(path)) from None


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


def save_model(path: Path, model: torch.nn.Module) -> None:
    save_tensors(path, model_state(model))


def load_model(path: Path, model: torch.nn.Module) -> None:
    """Load weights, refusing a checkpoint whose names or shapes do not fit the model the recipe builds."""
    if not path.is_file():
        raise OnceError("checkpoint not found", where=str(path), hint="Was the run interrupted before its first epoch?")
    tensors, _ = load_tensors(path)
    try:
        load_model_state(model, tensors)
    except RuntimeError as error:
        raise OnceError(
            f"the checkpoint does not fit the model its recipe builds: {str(error).splitlines()[0]}",
            where=str(path),
            hint="Were plugins upgraded since the run? Use the versions listed in run.json.",
        ) from None


def save_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer: dict[str, Any],
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
    }
    save_tensors(path, tensors, metadata)


def load_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore what `save_training_state` wrote; returns the trainer bookkeeping."""
    tensors, metadata = load_tensors(path)
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
