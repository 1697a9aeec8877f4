"""The public plugin API: everything a plugin (built-in or third-party) imports from ONCE comes from here.

    from once.api import hookimpl, Options, BuildContext

    class MyOptions(Options):
        dim: int = 64

    @hookimpl
    def register_item_encoders(register):
        register("mine", MyItemEncoder, MyOptions)

The contract of each kind of part is in `once.protocols` (re-exported here) and docs/plugins.md. Names not
exported here are internal and may change without notice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from once.errors import DataError, OnceError, RecipeError
from once.files import building, cache_root, file_stamp, read_text, write_atomic
from once.hookspecs import hookimpl
from once.kinds import KINDS, Kind
from once.progress import progress_bar, quiet_transformers
from once.protocols import (
    Augmenter,
    BuildContext,
    CachingEncoder,
    Dataset,
    ItemEncoder,
    Metric,
    MetricContext,
    Options,
    Pairs,
    Predictor,
    Register,
    SchemeContext,
    ScoredSplit,
    Tokenizer,
    Tracker,
    TrackerContext,
    UserEncoder,
)
from once.recipe import RecipePath

if TYPE_CHECKING:
    from once.data.export import write_mind_files
    from once.data.tables import SPLITS, UNLABELED, Corpus, ImpressionParts, Impressions, Items, Ragged
    from once.genre.merge import profile_text
    from once.genre.runner import MalformedAnswer, Request
    from once.metrics import auc, head_items, mrr, ndcg
    from once.nn import (
        AdditiveAttention,
        ConvTextEncoder,
        Dropout,
        MultiHeadSelfAttention,
        WordEmbedding,
        convolve_words,
        masked_softmax,
        word_embedding,
    )
    from once.states import StateCache

# names whose modules import numpy or torch: imported on first use, so that a plugin's parts module (options
# and hooks) loads without them
LAZY = {
    **dict.fromkeys(
        ("SPLITS", "UNLABELED", "Corpus", "ImpressionParts", "Impressions", "Items", "Ragged"), "once.data.tables"
    ),
    "profile_text": "once.genre.merge",
    "write_mind_files": "once.data.export",
    **dict.fromkeys(("auc", "head_items", "mrr", "ndcg"), "once.metrics"),
    **dict.fromkeys(("MalformedAnswer", "Request"), "once.genre.runner"),
    **dict.fromkeys(
        (
            "AdditiveAttention",
            "ConvTextEncoder",
            "convolve_words",
            "Dropout",
            "MultiHeadSelfAttention",
            "masked_softmax",
            "WordEmbedding",
            "word_embedding",
        ),
        "once.nn",
    ),
    "StateCache": "once.states",
}


def __getattr__(name: str) -> Any:
    if name in LAZY:
        value = getattr(importlib.import_module(LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'once.api' has no attribute '{name}'")


__all__ = [
    "KINDS",
    "SPLITS",
    "UNLABELED",
    "AdditiveAttention",
    "Augmenter",
    "BuildContext",
    "CachingEncoder",
    "ConvTextEncoder",
    "Corpus",
    "DataError",
    "Dataset",
    "Dropout",
    "ImpressionParts",
    "Impressions",
    "ItemEncoder",
    "Items",
    "Kind",
    "MalformedAnswer",
    "Metric",
    "MetricContext",
    "MultiHeadSelfAttention",
    "OnceError",
    "Options",
    "Pairs",
    "Predictor",
    "Ragged",
    "RecipeError",
    "RecipePath",
    "Register",
    "Request",
    "SchemeContext",
    "ScoredSplit",
    "StateCache",
    "Tokenizer",
    "Tracker",
    "TrackerContext",
    "UserEncoder",
    "auc",
    "building",
    "cache_root",
    "convolve_words",
    "file_stamp",
    "head_items",
    "hookimpl",
    "masked_softmax",
    "mrr",
    "ndcg",
    "profile_text",
    "progress_bar",
    "quiet_transformers",
    "read_text",
    "word_embedding",
    "WordEmbedding",
    "write_atomic",
    "write_mind_files",
]
