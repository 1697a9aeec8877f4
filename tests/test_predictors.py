"""The CTR predictors and the ranking task: shapes and gradients, the symmetries the papers' formulas have, fast
evaluation against the full model, the ranking loss and metrics against hand and scikit-learn values, and the
recipes the engine refuses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY
from sklearn.metrics import log_loss, roc_auc_score

from once.api import BuildContext, Pairs, RecipeError, ScoredSplit
from once.assembly import load_data
from once.data.sampling import RankingRows, ranking_batches
from once.evaluate import score_split
from once.measure import MetricSuite
from once.model import build_recommender
from once.protocols import MetricContext
from once.recipe import load_recipe
from once.train import click_loss, train
from once.trained import TrainedModel
from once_plugins.metrics.accuracy import GlobalAuc, LogLoss
from once_plugins.predictors.autoint import InteractingLayer
from once_plugins.predictors.deepfm import factorization_machine

PREDICTORS = ("dnn", "dcn", "dcnv2", "gdcn", "deepfm", "pnn", "autoint", "finalmlp", "masknet", "din")
SMALL = {  # small layers, so that each builds in milliseconds
    "dnn": {"hidden": [16, 8]},
    "dcn": {"hidden": [16], "cross_layers": 2},
    "dcnv2": {"hidden": [16], "cross_layers": 2},
    "gdcn": {"hidden": [16], "cross_layers": 2},
    "deepfm": {"hidden": [16]},
    "pnn": {"hidden": [16]},
    "autoint": {"layers": 2, "heads": 2, "attention_dim": 4},
    "finalmlp": {"mlp1": [16], "mlp2": [8], "selection_hidden": [4], "heads": 2},
    "masknet": {"blocks": 2, "block_dim": 8, "hidden": [8]},
    "din": {"attention_hidden": [8], "hidden": [16, 8]},
}
VARIANTS = [  # every structure a predictor's options choose
    *((name, {}) for name in PREDICTORS),
    ("dcnv2", {"rank": 3, "experts": 2, "structure": "stacked"}),
    ("gdcn", {"structure": "stacked"}),
    ("pnn", {"product": "outer"}),
    ("autoint", {"hidden": [8]}),
    ("masknet", {"structure": "serial"}),
    ("din", {"activation": "prelu"}),
]
ITEMS, USERS, DIM = 10, 5, 8
CONTEXT = BuildContext(
    vocab_size=20,
    special_ids=(0, 1),
    word_vectors=None,
    text_lengths={"title": 4},
    category_sizes={"category": 4},
    num_users=USERS,
    item_features={"category": torch.tensor([0, 1, 2, 3, 1, 2, 3, 1, 2, 3])},
    item_clicks=torch.tensor([0.0, 3, 0, 40, 1, 7, 0, 2, 100, 5]),
    tokenizer={},
    item_dim=DIM,
    user_dim=DIM,
)


def build(name: str, context: BuildContext = CONTEXT, **options) -> torch.nn.Module:
    from once.registry import load_registry

    part = load_registry().get("predictor", name)
    return part.load()(part.options(**{**SMALL[name], **options}), context)


def inputs(generator: torch.Generator, batch: int = 3, count: int = 4, length: int = 5):
    users = torch.randn(batch, DIM, generator=generator)
    candidates = torch.randn(batch, count, DIM, generator=generator, requires_grad=True)
    items = torch.randint(1, ITEMS, (batch, count), generator=generator)
    items[0, 0] = ITEMS + 3  # an item posted to the server after training: past the tables
    history = torch.randint(1, ITEMS, (batch, length), generator=generator)
    history[1, 3:] = 0  # padding
    pairs = Pairs(torch.tensor([0, 2, 4]), items, history, torch.randn(batch, length, DIM, generator=generator))
    return users, candidates, pairs


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_each_predictor_scores_every_pair_and_trains_every_parameter(name, options):
    generator = torch.Generator().manual_seed(0)
    predictor = build(name, fields=["user", "popularity", "category"], **options)
    users, candidates, pairs = inputs(generator)
    scores = predictor(users, candidates, pairs)
    assert scores.shape == (3, 4) and torch.isfinite(scores).all()
    scores.square().sum().backward()
    assert candidates.grad.abs().sum() > 0
    missing = [n for n, p in predictor.named_parameters() if p.grad is None]
    assert not missing, missing
    # each pair is scored alone: another candidate beside it changes nothing (in eval mode, no batch statistics)
    predictor.eval()
    with torch.no_grad():
        whole = predictor(users, candidates, pairs)
        alone = predictor(users, candidates[:, 1:2], dataclasses.replace(pairs, items=pairs.items[:, 1:2]))
    torch.testing.assert_close(alone[:, 0], whole[:, 1], rtol=1e-5, atol=1e-6)


def test_side_fields_are_checked_and_unknown_items_read_id_zero():
    with pytest.raises(RecipeError, match="'genre' is no side field") as error:
        build("dnn", fields=["genre"])
    assert "user, popularity, category" in error.value.hint and error.value.where == "model.predictor.fields"
    predictor = build("dnn", fields=["popularity", "category"])
    items = torch.tensor([[3, ITEMS + 1]])
    fields = predictor.fields(torch.zeros(1, DIM), torch.zeros(1, 2, DIM), Pairs(torch.zeros(1).long(), items, items))
    popularity, category = predictor.fields.embeddings["popularity"], predictor.fields.embeddings["category"]
    torch.testing.assert_close(fields[0, 0, 2], popularity.weight[5])  # 40 clicks: floor(log2(41)) = 5
    torch.testing.assert_close(fields[0, 0, 3], category.weight[3])
    torch.testing.assert_close(fields[0, 1, 2:], torch.stack([popularity.weight[0], category.weight[0]]))
    with pytest.raises(RecipeError, match="4 vectors per user"):
        build("dnn", dataclasses.replace(CONTEXT, user_vectors=4))


def test_the_factorization_machine_sums_every_pair_of_fields_in_any_order():
    fields = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pairs = sum(fields[:, i] @ fields[:, j].T for i in range(5) for j in range(i + 1, 5)).diagonal()
    torch.testing.assert_close(factorization_machine(fields), pairs)
    torch.testing.assert_close(factorization_machine(fields[:, [3, 0, 4, 1, 2]]), factorization_machine(fields))


def test_autoint_layers_are_equivariant_to_the_order_of_the_fields():
    torch.manual_seed(0)
    layer = InteractingLayer(8, heads=2, attention_dim=4, residual=True)
    fields = torch.randn(3, 5, 8)
    order = torch.tensor([2, 4, 0, 1, 3])
    torch.testing.assert_close(layer(fields[:, order]), layer(fields)[:, order])


def test_pnn_inner_products_and_the_dcn_cross_layer_follow_their_formulas():
    pnn = build("pnn")
    fields = torch.randn(2, 2, DIM)
    inner = fields @ fields.transpose(1, 2)  # every p_ij, the diagonal included, each pair once
    torch.testing.assert_close(pnn.products(fields), inner[:, [0, 0, 1], [0, 1, 1]])
    dcn = build("dcn", cross_layers=1)
    x0 = torch.randn(4, 2 * DIM)
    weight, bias = dcn.cross.weights[0], dcn.cross.biases[0]
    torch.testing.assert_close(dcn.cross(x0), x0 * (x0 @ weight)[:, None] + bias + x0)


def test_din_ignores_padding_candidates_in_training_too():
    """Dice's batch statistics see real pairs only: a padding candidate's vector changes no real pair's score."""
    predictor = build("din", dropout=0.0).train()
    users, candidates, pairs = inputs(torch.Generator().manual_seed(4))
    items = pairs.items.clone()
    items[:, -1] = 0  # the last candidate of each row is padding, as in a ranking batch
    pairs = dataclasses.replace(pairs, items=items)
    with torch.no_grad():
        scores = predictor(users, candidates, pairs)
        other = candidates.clone()
        other[:, -1] = 100.0
        changed = predictor(users, other, pairs)
    torch.testing.assert_close(changed[:, :-1], scores[:, :-1])
    assert (scores[:, -1] == 0).all()


def test_din_weighs_the_history_as_a_set_and_ignores_padding():
    predictor = build("din").eval()
    generator = torch.Generator().manual_seed(2)
    users, candidates, pairs = inputs(generator)
    with torch.no_grad():
        scores = predictor(users, candidates, pairs)
        order = torch.tensor([4, 2, 0, 3, 1])
        shuffled = Pairs(pairs.users, pairs.items, pairs.history[:, order], pairs.history_vectors[:, order])
        torch.testing.assert_close(predictor(users, candidates, shuffled), scores)
        padded = Pairs(
            pairs.users,
            pairs.items,
            torch.cat([pairs.history, torch.zeros(3, 2, dtype=torch.long)], 1),
            torch.cat([pairs.history_vectors, torch.randn(3, 2, DIM, generator=generator)], 1),
        )
        torch.testing.assert_close(predictor(users, candidates, padded), scores)
        # the candidate's interest is built from the history: another history, another score
        other = dataclasses.replace(pairs, history_vectors=pairs.history_vectors.flip(0))
        assert not torch.allclose(predictor(users, candidates, other), scores)


@pytest.fixture(scope="module")
def demo(registry):
    resolved = load_recipe("demo", registry, [*TINY, "model.user={name: attention, query_dim: 16}"])
    return load_data(resolved)


@pytest.mark.parametrize("name", PREDICTORS)
def test_fast_evaluation_equals_the_full_model_per_row(registry, demo, name):
    options = {**SMALL[name], "fields": ["user", "popularity", "category", "subcategory"]}
    overrides = [*TINY, "model.user={name: attention, query_dim: 16}", f"model.predictor={{name: {name}}}"]
    overrides += [f"model.predictor.{key}={value}" for key, value in options.items()]
    resolved = load_recipe("demo", registry, [*overrides, "train.task=ranking"])
    torch.manual_seed(0)
    model = build_recommender(resolved, demo)
    split = demo.splits["dev"]
    kwargs = {"num_items": demo.num_items, "max_history": 20, "batch_size": 64, "device": torch.device("cpu")}
    fast = score_split(model, split, fast=True, **kwargs)
    plain = score_split(model, split, fast=False, **kwargs)
    np.testing.assert_allclose(np.concatenate(fast), np.concatenate(plain), rtol=1e-5, atol=1e-6)
    assert np.concatenate(fast).std() > 0  # the scores tell pairs apart


def test_the_ranking_loss_is_binary_cross_entropy_over_labeled_rows():
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # -1: padding, not a row
    # a click scored s costs log(1 + e^-s), a non-click log(1 + e^s)
    expected = np.mean(
        [np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0)), np.log(2), np.log1p(np.exp(-3.0)), np.log1p(np.exp(-2.0))]
    )
    assert click_loss(scores, labels).item() == pytest.approx(expected, rel=1e-6)


def test_logloss_and_global_auc_agree_with_scikit_learn():
    rng = np.random.default_rng(3)
    labels = [rng.integers(0, 2, n).astype(float) for n in rng.integers(2, 9, 40)]
    scores = [rng.normal(size=len(row)).astype(np.float32) for row in labels]
    split = ScoredSplit(labels, scores, [np.arange(len(row)) for row in labels], [np.zeros(0)] * 40, np.zeros(9), {})
    rows = np.arange(40)
    flat_labels, flat_scores = np.concatenate(labels), np.concatenate(scores).astype(np.float64)
    context = MetricContext(k=(5,), categories=(), task="ranking", unclicked_rate=0.25)
    probabilities = 1 / (1 + np.exp(-(flat_scores + np.log(0.25))))  # calibrated for the down-sampling
    assert LogLoss(None, context)(split, rows)["logloss"] == pytest.approx(log_loss(flat_labels, probabilities))
    assert GlobalAuc(None, context)(split, rows)["global_auc"] == pytest.approx(roc_auc_score(flat_labels, flat_scores))


def test_ranking_batches_hold_whole_impressions_and_every_kept_row_once(demo):
    split = demo.splits["train"]
    rows = RankingRows.from_split(split)
    rng = np.random.default_rng(0)
    kept = rows.kept(0.5, rng)
    assert kept[rows.labels == 1].all()  # every click is kept
    assert 0.4 < kept[rows.labels == 0].mean() < 0.6
    count, batches = ranking_batches(rows, kept, split.history, split.user_ids, rng, 40, 20)
    seen = []
    batches = list(batches)
    widest = int(np.bincount(rows.impressions[kept]).max())
    assert len(batches) == count
    for batch in batches:
        labeled = batch["labels"] >= 0
        # about 40 rows: off by less than one impression's rows (its rows are never split)
        assert abs(int(labeled.sum()) - 40) < widest or batch is batches[-1]
        assert (batch["candidates"][~labeled] == 0).all()
        seen.extend(
            zip(
                batch["users"].repeat_interleave(labeled.sum(1)).tolist(),
                batch["candidates"][labeled].tolist(),
                strict=True,
            )
        )
    expected = list(zip(split.user_ids[rows.impressions[kept]].tolist(), rows.items[kept].tolist(), strict=True))
    assert sorted(seen) == sorted(expected)


def test_recipes_that_mix_a_task_with_what_it_cannot_use_are_refused(registry):
    with pytest.raises(RecipeError) as error:
        load_recipe("demo", registry, ["train.unclicked_rate=0.5"])
    assert "train.unclicked_rate" in str(error.value) and "train.task" in str(error.value)
    resolved = load_recipe("demo", registry, ["eval.metrics=[auc, logloss]"])
    with pytest.raises(RecipeError) as error:
        MetricSuite.build(resolved, ())
    message = str(error.value)
    assert "logloss (eval.metrics)" in message and "train.task: ranking" in message and "\n\n" not in message
    assert error.value.where == "eval.metrics"


@pytest.mark.parametrize("name", PREDICTORS)
def test_each_predictor_has_a_demo_and_a_goodreads_recipe(registry, name, monkeypatch, tmp_path):
    monkeypatch.setenv("GOODREADS_MIND", str(tmp_path))
    for corpus in ("demo", "goodreads"):
        recipe = load_recipe(f"{corpus}-{name}", registry)
        assert recipe.part("model", "predictor").name == name and recipe.recipe.train.task == "ranking"
        assert "logloss" in recipe.recipe.eval.metrics


def test_a_ctr_recipe_learns_the_demo_under_the_ranking_task(registry, tmp_path):
    overrides = [*TINY, "model.user={name: attention, query_dim: 16}", "train.lr=0.005", "train.batch_size=128"]
    result = train(load_recipe("demo-deepfm", registry, overrides), runs_root=tmp_path)
    assert result.test["auc"] > 0.65, result.test  # chance is 0.5
    assert result.test["logloss"] < result.epochs[0]["train_loss"] * 1.2  # probabilities, not bare logits
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]


def test_recommend_scores_a_ctr_model_as_its_full_forward_over_the_whole_catalogue(registry, tmp_path):
    """DIN's history attention and the side fields on the recommend (and serve) path, in chunks of the pool."""
    overrides = [*TINY, "model.user={name: attention, query_dim: 16}", "train.epochs=1", "eval.batch_size=100"]
    overrides += ["model.predictor.fields=[user, popularity, category]", "model.predictor.attention_hidden=[8]"]
    run_dir = train(load_recipe("demo-din", registry, overrides), runs_root=tmp_path).run.path
    trained = TrainedModel(run_dir, registry)
    user = trained.data.users[7]
    (recommendations,) = trained.recommend([user], top=trained.data.num_items).values()  # several chunks
    items = [trained.item_index[r.item] for r in recommendations][:300]
    split, row = trained._latest[trained.user_index(user)]
    history = torch.tensor(trained.data.splits[split].history[row]).unsqueeze(0)
    users = torch.tensor(trained.data.splits[split].user_ids[row : row + 1])
    with torch.no_grad():
        full = trained.model(history, torch.tensor([items]), users)[0]
    expected = torch.tensor([r.score for r in recommendations][:300])
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)


def test_a_predictor_written_for_two_arguments_is_told_about_pairs():
    from once.model import check_predictor_signature

    class Old(torch.nn.Module):
        def forward(self, users, candidates):
            return (users.unsqueeze(1) * candidates).sum(-1)

    with pytest.raises(RecipeError, match="predictors now also receive the rows' Pairs") as error:
        check_predictor_signature(Old(), "old")
    assert "forward(self, users, candidates, pairs)" in error.value.hint
    check_predictor_signature(build("dnn"), "dnn")  # the current contract passes
