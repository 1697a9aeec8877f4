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

from once.data.tables import SPLITS, UNLABELED, Corpus, Impressions, Items, Ragged
from once.errors import DataError, OnceError, RecipeError
from once.files import building, cache_root, read_text, write_atomic
from once.genre.merge import profile_text
from once.genre.runner import MalformedAnswer, Request
from once.hookspecs import hookimpl
from once.kinds import KINDS, Kind
from once.nn import AdditiveAttention, ConvTextEncoder, MultiHeadSelfAttention, word_embedding
from once.progress import progress_bar, quiet_transformers
from once.protocols import (
    Augmenter,
    BuildContext,
    CachingEncoder,
    Dataset,
    ItemEncoder,
    Options,
    Predictor,
    Register,
    SchemeContext,
    Tokenizer,
    UserEncoder,
)
from once.recipe import RecipePath
from once.states import StateCache

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
    "Impressions",
    "ItemEncoder",
    "Items",
    "Kind",
    "MalformedAnswer",
    "MultiHeadSelfAttention",
    "OnceError",
    "Options",
    "Predictor",
    "Ragged",
    "RecipeError",
    "RecipePath",
    "Register",
    "Request",
    "SchemeContext",
    "StateCache",
    "Tokenizer",
    "UserEncoder",
    "building",
    "cache_root",
    "hookimpl",
    "profile_text",
    "progress_bar",
    "quiet_transformers",
    "read_text",
    "word_embedding",
    "write_atomic",
]
