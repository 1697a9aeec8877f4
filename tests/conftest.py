"""Shared fixtures: a private cache folder, the real registry and a tiny demo recipe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from once.recipe import load_recipe
from once.registry import load_registry

# Small enough to train in seconds, large enough to learn the demo's topics.
TINY = [
    "dataset.items=600",
    "dataset.users=400",
    "dataset.impressions=3",
    "model.item.word_dim=32",
    "model.item.heads=2",
    "model.item.head_dim=8",
    "model.item.query_dim=16",
    "model.user.heads=2",
    "model.user.head_dim=8",
    "model.user.query_dim=16",
    "train.epochs=3",
    "train.batch_size=32",
    "train.lr=0.02",
    "device=cpu",
]


# DIRE at test size: a 3-layer random LM (see `tiny_lm`) over the demo-bert/demo-llama recipes
LM_LAYERS = 3
TINY_DIRE = [
    "dataset.items=300",
    "dataset.users=200",
    "dataset.impressions=2",
    "items.text.prompt=16",
    "model.item.dim=16",
    "model.item.query_dim=16",
    "model.user.heads=2",
    "model.user.head_dim=8",
    "model.user.query_dim=16",
    "train.epochs=1",
    "train.batch_size=32",
    "device=cpu",
]


def tiny_lm(family: str, folder: Path) -> Path:
    """A tiny random BERT or LLaMA checkpoint with its tokenizer, saved as a user's model folder would be."""
    from once_plugins.lm.tiny import write_tiny_model

    texts = ["news article about sports and the election", "a recipe for soup", "travel to the mountains"] * 20
    return write_tiny_model(family, folder, texts, layers=LM_LAYERS, hidden=32, seed=1)


@pytest.fixture(scope="session", autouse=True)
def once_cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("once-cache")
    os.environ["ONCE_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture
def tiny(registry):
    """Resolve the demo recipe at test size, with extra overrides."""

    def resolve(*overrides: str):
        return load_recipe("demo", registry, [*TINY, *overrides])

    return resolve


def pytest_terminal_summary(terminalreporter):
    """How many generated inputs the property-based tests tried (tests/test_fuzz.py)."""
    fuzz = sys.modules.get("test_fuzz")
    if fuzz and fuzz.TRIED:
        tried = ", ".join(f"{name} {n}" for name, n in sorted(fuzz.TRIED.items()))
        terminalreporter.write_line(f"fuzzed inputs: {sum(fuzz.TRIED.values())} ({tried})")
