"""`once tiny-model bert|llama OUT`: a small randomly initialised checkpoint, to try DIRE recipes offline.

The model is a real transformers `BertModel` or `LlamaModel` written with `save_pretrained`, with a real
tokenizer (WordPiece for BERT, byte-level BPE for LLaMA) learned from the demo corpus, so recipes load it by
path exactly as they would load `bert-base-uncased` or LLaMA weights. Its vectors are random: it shows the
pipeline working, not pretrained knowledge.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import typer

from once.api import OnceError, hookimpl, quiet_transformers

Family = Literal["bert", "llama"]


@hookimpl
def register_commands(cli, registry):
    @cli.command("tiny-model")
    def tiny_model(
        family: Annotated[str, typer.Argument(help="bert or llama")],
        out_dir: Annotated[Path, typer.Argument(help="Folder to write the checkpoint into.")],
        layers: Annotated[int, typer.Option(min=1, help="Transformer layers.")] = 2,
        hidden: Annotated[int, typer.Option(min=8, help="Hidden size (a multiple of 4).")] = 64,
        seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
    ):
        """Write a tiny random BERT or LLaMA checkpoint with a tokenizer learned from the demo corpus."""
        if family not in ("bert", "llama"):
            raise OnceError(f"unknown model family '{family}'", hint="Choose bert or llama.")
        if out_dir.exists() and any(out_dir.iterdir()):
            raise OnceError("refusing to write into a folder that is not empty", where=str(out_dir))
        write_tiny_model(family, out_dir, demo_texts(registry), layers=layers, hidden=hidden, seed=seed)
        typer.echo(f"wrote a tiny random {family} checkpoint to {out_dir}")


def demo_texts(registry) -> list[str]:
    """Every text of the default demo corpus (the tokenizer's training data), read through the registry like any
    dataset a recipe names."""
    demo = registry.get("dataset", "demo")
    items = demo.load()(demo.options(), None).read().items
    return [text for column in (*items.text.values(), *items.categories.values()) for text in column if text]


def write_tiny_model(
    family: Family, out: Path, texts: Iterable[str], *, layers: int = 2, hidden: int = 64, seed: int = 0
) -> Path:
    """Save a random `family` model of the given size and a tokenizer trained on `texts` into `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    quiet_transformers()
    texts = list(texts)
    if family == "bert":
        specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=1000, special_tokens=list(specials.values()))
        tokenizer.train_from_iterator(texts, trainer)
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
        )
        tokenizer.decoder = decoders.WordPiece()
    else:
        specials = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=list(specials.values()))
        tokenizer.train_from_iterator(texts, trainer)
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
        )
        tokenizer.decoder = decoders.ByteLevel()
    vocab = tokenizer.get_vocab_size()
    sizes = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "intermediate_size": 2 * hidden,
        "vocab_size": vocab,
    }
    torch.manual_seed(seed)
    if family == "bert":
        model = BertModel(BertConfig(**sizes, max_position_embeddings=128, pad_token_id=0), add_pooling_layer=False)
    else:
        model = LlamaModel(LlamaConfig(**sizes, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials).save_pretrained(out)
    return out
