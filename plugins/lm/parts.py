"""DIRE's parts (the transformers tokenizer, the bert and llama item encoders): recipe options and where each lives.

This module is the package's entry point. It imports no heavy dependency: each implementation is named by
reference and imported when a recipe builds it, so `once --help`, `once plugins` and `once recipe validate` stay
fast. The models themselves live one per file beside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from once.api import Options, RecipePath, hookimpl


class TransformersTokenizerOptions(Options):
    path: RecipePath = Field(description="folder of a transformers checkpoint (tokenizer files included)")
    gguf_file: str | None = Field(None, description="a GGUF file inside `path` to read instead")


class LoraOptions(Options):
    rank: int = Field(32, ge=1)
    alpha: float = Field(128, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    targets: list[str] | None = Field(None, description="module names to adapt; default q_proj,v_proj or query,value")


class LmItemOptions(Options):
    path: RecipePath | None = Field(None, description="checkpoint folder; default: the tokenizer's")
    gguf_file: str | None = Field(None, description="a GGUF file inside `path`; default: the tokenizer's")
    field: str | None = Field(None, description="tokenized text field to encode; default: the first in items.text")
    tune_layers: int = Field(2, ge=0, description="top transformer layers to train; the ones below stay frozen")
    lora: LoraOptions | None = Field(LoraOptions(), description="LoRA on the trained layers; null trains them fully")
    pooling: Literal["attention", "mean", "first", "last"] = "attention"
    query_dim: int = Field(200, ge=1, description="additive attention query size (pooling: attention)")
    dim: int = Field(256, ge=1, description="size of the item vector (a projection of the pooled states)")
    dtype: Literal["float32", "bfloat16"] = "float32"
    item_lr: float | None = Field(None, gt=0, description="learning rate of the language model; default train.lr")
    cache: bool = Field(True, description="train on cached states of the frozen layers (built when missing)")
    cache_dir: RecipePath | None = Field(None, description="where the cache lives; default under $ONCE_CACHE")


@hookimpl
def register_tokenizers(register):
    register("transformers", "once_plugins.lm.dire:TransformersTokenizer", TransformersTokenizerOptions)


@hookimpl
def register_item_encoders(register):
    register("bert", "once_plugins.lm.dire:LmItemEncoder", LmItemOptions)
    register("llama", "once_plugins.lm.dire:LmItemEncoder", LmItemOptions)
