"""Pretrained language models as item encoders (DIRE): any local transformers checkpoint, frozen below a cut.

`tokenizer: transformers` tokenizes item text (usually a prompt template, `items.templates`) with the
checkpoint's own tokenizer. Item encoders `bert` (encoder-only: BERT, RoBERTa, MiniLM...) and `llama`
(decoder-only: LLaMA, Mistral, Qwen, SmolLM...) are one implementation; the name says which family a recipe
means. The lower layers stay frozen and can be cached (`once cache`); the top `tune_layers` layers are trained,
with LoRA (peft) by default, then token states are pooled and projected to the recommender's size.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from once.api import AdditiveAttention, RecipeError, StateCache, file_stamp, quiet_transformers
from once_plugins.lm.parts import LmItemOptions, LoraOptions, TransformersTokenizerOptions

CODE_VERSION = 1
LORA_TARGETS = (["q_proj", "v_proj"], ["query", "value"])  # LLaMA-style and BERT-style attention projections


def files_fingerprint(path: Path) -> str:
    """Names, sizes and modification times of a checkpoint folder's files (hashing gigabytes would be slow)."""
    return ";".join(f"{f.name}:{file_stamp(f)}" for f in sorted(path.iterdir()) if f.is_file())


def _checkpoint_folder(path: Path, key: str) -> Path:
    if not path.is_dir():
        raise RecipeError(
            f"model folder not found: {path}",
            where=key,
            hint="Give the folder of a transformers checkpoint (config.json, weights, tokenizer files); "
            "`once tiny-model bert|llama FOLDER` writes a small random one.",
        )
    return path


def _loaded(load, path: Path, key: str, what: str):
    """Call a transformers loader quietly; its failures become one error naming the recipe key."""
    quiet_transformers()
    try:
        return load()
    except (OSError, ValueError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RecipeError(
            f"{path} is not a transformers {what} checkpoint: {first}",
            where=key,
            hint="Give a folder written by save_pretrained (or one with a GGUF file and gguf_file set).",
        ) from None


class TransformersTokenizer:
    """A checkpoint's own tokenizer. Ids are shifted up by one so that 0 stays the engine's padding id."""

    def __init__(self, options: TransformersTokenizerOptions, context: object = None) -> None:
        from transformers import AutoTokenizer

        self.options = options
        path = _checkpoint_folder(options.path, "tokenizer.path")
        self.tokenizer = _loaded(
            lambda: AutoTokenizer.from_pretrained(str(path), gguf_file=options.gguf_file),
            path,
            "tokenizer.path",
            "tokenizer",
        )
        self.vocab_size = len(self.tokenizer) + 1
        self.special_ids = (0, *sorted(i + 1 for i in self.tokenizer.all_special_ids))

    def fit(self, texts: Iterable[str]) -> None:
        """Nothing to learn: the vocabulary comes with the checkpoint."""

    def fingerprint(self) -> str:
        return files_fingerprint(self.options.path)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        ids = self.tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
        return [i + 1 for i in ids]

    def state(self) -> dict:
        return {"kind": "transformers", "path": str(self.options.path), "gguf_file": self.options.gguf_file}

    def restore(self, state: dict) -> None:
        """Nothing to take back: the vocabulary is the checkpoint's, loaded when built."""

    def word_vectors(self) -> None:
        return None


class _Passthrough(nn.Module):
    """Stands in for an encoder-only model's embedding block: the cached states are its output."""

    def forward(self, *args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return inputs_embeds


class _Stop(Exception):
    """Ends a forward pass once the states entering the first trained layer are captured."""


def _layer_list(model: nn.Module) -> str:
    """Dotted name of the model's stack of transformer layers."""
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return name
    raise RecipeError(
        f"cannot find the {count} transformer layers of this {type(model).__name__}", where="model.item.path"
    )


def _view(model: nn.Module, path: str, layers: nn.ModuleList, replace: dict[str, nn.Module | None]) -> nn.Module:
    """A shallow copy of `model` that runs `layers` at `path` and has some direct children replaced.

    Weights are shared with `model`; only the containers along `path` are copied.
    """
    head, _, rest = path.partition(".")
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    clone._modules[head] = _view(model._modules[head], rest, layers, {}) if rest else layers
    clone._modules.update(replace)
    return clone


class LmItemEncoder(nn.Module):
    """Frozen lower layers (or their cached states) -> trained top layers -> pooling -> projection."""

    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: LmItemOptions, context) -> None:
        super().__init__()
        from transformers import AutoModel

        self.field = context.require_text(options.field or next(iter(context.text_lengths)), "model.item.field")
        tokenizer = context.tokenizer
        if tokenizer.get("kind") != "transformers":
            raise RecipeError(
                "an LM item encoder needs the checkpoint's own tokenizer",
                where="tokenizer.name",
                hint="Use tokenizer: {name: transformers, path: <the checkpoint folder>}.",
            )
        path = options.path or Path(tokenizer["path"])
        gguf_file = options.gguf_file or (tokenizer.get("gguf_file") if options.path is None else None)
        key = "model.item.path" if options.path else "tokenizer.path"
        self.dtype = getattr(torch, options.dtype)
        folder = str(_checkpoint_folder(path, key))
        dtype = self.dtype
        model = _loaded(lambda: AutoModel.from_pretrained(folder, gguf_file=gguf_file, dtype=dtype), path, key, "model")
        rows = model.get_input_embeddings().num_embeddings
        if context.vocab_size - 1 > rows:
            raise RecipeError(
                f"the tokenizer has {context.vocab_size - 1} tokens but the model embeds only {rows}",
                where="model.item.path",
                hint="Use the same checkpoint for tokenizer.path and model.item.path.",
            )
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # BERT's sentence pooler is not used
        model.requires_grad_(False)
        layers_path = _layer_list(model)
        layers = model.get_submodule(layers_path)
        if options.tune_layers > len(layers):
            raise RecipeError(
                f"tune_layers is {options.tune_layers} but this model has {len(layers)} layers",
                where="model.item.tune_layers",
                hint=f"Allowed: 0 (train only pooling and projection) to {len(layers)} (no frozen layer).",
            )
        self.cut = len(layers) - options.tune_layers
        top_layers = nn.ModuleList(layers[self.cut :])
        if hasattr(model, "embeddings"):  # encoder-only: position and type embeddings live in this block
            replace: dict[str, nn.Module | None] = {"embeddings": _Passthrough()}
        else:  # decoder-only: inputs_embeds go straight into the layers
            replace = {n: None for n, child in model.named_children() if child is model.get_input_embeddings()}
        self.top = _view(model, layers_path, top_layers, replace)
        self.model: nn.Module | None = model  # registered after `top`, so shared weights keep top.* names
        self.layers_path, self.num_layers = layers_path, len(layers)
        if options.lora:
            self._add_lora(options.lora, top_layers)
        else:
            top_layers.requires_grad_(True)
        self.hidden = model.config.hidden_size
        self.pooling = options.pooling
        self.pool = AdditiveAttention(self.hidden, options.query_dim) if options.pooling == "attention" else None
        self.projection = nn.Linear(self.hidden, options.dim)
        self.dim = options.dim
        if options.item_lr:
            self.learning_rates = {"top": options.item_lr}
        self.wants_cache = options.cache and self.cut > 0
        self.cache_dir = options.cache_dir
        self.cache: StateCache | None = None
        self._identity = {
            "code": CODE_VERSION,
            "model": files_fingerprint(path),
            "gguf_file": gguf_file,
            "cut": self.cut,
            "dtype": options.dtype,
            "field": self.field,
        }

    def _add_lora(self, lora: LoraOptions, layers: nn.ModuleList) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        if not len(layers):
            raise RecipeError(
                "LoRA needs at least one trained layer, but tune_layers is 0",
                where="model.item.lora",
                hint="Set model.item.lora: null, or tune_layers: 1 or more.",
            )
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in layers.named_modules() if isinstance(m, nn.Linear)})
        targets = lora.targets or next((t for t in LORA_TARGETS if set(t) <= set(linear)), None)
        if not targets or not set(targets) & set(linear):
            raise RecipeError(
                f"LoRA targets {targets or '(default)'} match no linear module of the trained layers",
                where="model.item.lora.targets",
                hint=f"Linear modules in these layers: {', '.join(linear)}.",
            )
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
        inject_adapter_in_model(config, self.top)
        for name, parameter in self.top.named_parameters():
            parameter.requires_grad = "lora_" in name

    # -- the caching protocol (once.states.CachingEncoder) --

    def cache_identity(self) -> dict[str, Any] | None:
        return self._identity if self.cut > 0 else None

    def use_cache(self, cache: StateCache | None) -> None:
        self.cache = cache
        if cache is not None:
            self.model = None  # the frozen layers are no longer needed: free their memory

    def frozen_states(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the frozen part (always in eval mode) up to the first trained layer."""
        if self.model is None:
            raise RuntimeError("the frozen layers were dropped when the cache was attached")
        tokens = features[self.field]
        mask = _nonempty(tokens != 0)
        captured: dict[str, torch.Tensor] = {}

        def before(module, args, kwargs):  # input of the first trained layer
            captured["states"] = args[0] if args else kwargs["hidden_states"]
            raise _Stop

        def after(module, args, output):  # output of the last layer, when every layer is frozen
            captured["states"] = output[0] if isinstance(output, tuple) else output

        layers = self.model.get_submodule(self.layers_path)
        if self.cut < self.num_layers:
            hook = layers[self.cut].register_forward_pre_hook(before, with_kwargs=True)
        else:
            hook = layers[-1].register_forward_hook(after)
        training = self.top.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(input_ids=(tokens - 1).clamp(min=0), attention_mask=mask.long())
        except _Stop:
            pass
        finally:
            hook.remove()
            self.top.train(training)
        return captured["states"], mask

    # -- encoding --

    @property
    def encodes_new_items(self) -> bool:
        """Whether an item the cache lacks can be encoded: not once the frozen layers were dropped for the cache."""
        return self.model is not None

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]
        if self.cache is not None:
            mask = _nonempty(tokens != 0)
            states = self.cache.lookup(features["item"], tokens.shape[1]).to(tokens.device, self.dtype)
        else:
            states, mask = self.frozen_states(features)
        hidden = self.top(inputs_embeds=states, attention_mask=mask.long()).last_hidden_state.float()
        pooled = self._pool(hidden, mask)
        return self.projection(pooled) * (tokens != 0).any(1, keepdim=True)  # items without text: zeros

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            return self.pool(hidden, mask)
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).float()
            return (hidden * weights).sum(1) / weights.sum(1)
        if self.pooling == "first":
            return hidden[:, 0]
        last = mask.long().sum(1) - 1  # right padding: the last real token
        return hidden[torch.arange(len(hidden), device=hidden.device), last]


def _nonempty(mask: torch.Tensor) -> torch.Tensor:
    """The attention mask, with the first position of token-less items (the padding item) switched on."""
    mask = mask.clone()
    mask[~mask.any(1), 0] = True
    return mask
