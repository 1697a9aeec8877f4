"""Recommendations, exported vectors and run comparison from a trained run."""

import json

import pytest
import torch
from conftest import TINY
from safetensors.torch import load_file

from once.cli import run as cli
from once.errors import DataError, OnceError
from once.recipe import load_recipe
from once.train import train
from once.trained import TrainedModel


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, registry):
    overrides = [o for o in TINY if not o.startswith("train.epochs")] + ["train.epochs=2"]
    return train(load_recipe("demo", registry, overrides), runs_root=tmp_path_factory.mktemp("runs")).run.path


@pytest.fixture(scope="module")
def trained(run_dir, registry):
    return TrainedModel(run_dir, registry)


def test_recommendations_are_the_models_best_unseen_items(trained):
    user = trained.data.users[5]
    (recommendations,) = trained.recommend([user], top=8).values()
    items = [trained.item_index[r.item] for r in recommendations]
    history = set(trained.history(trained.user_index(user)).tolist())
    assert len(items) == 8 and len(set(items)) == 8 and not history & set(items)
    scores = [r.score for r in recommendations]
    assert scores == sorted(scores, reverse=True)
    # the same scores as the full model on that user's latest history
    split, row = trained._latest[trained.user_index(user)]
    history_tensor = torch.tensor(trained.data.splits[split].history[row]).unsqueeze(0)
    users = torch.tensor(trained.data.splits[split].user_ids[row : row + 1])
    with torch.no_grad():
        full = trained.model(history_tensor, torch.tensor([items]), users)[0]
    torch.testing.assert_close(full, torch.tensor(scores), rtol=1e-5, atol=1e-5)
    clicked = trained.seen(trained.user_index(user))
    assert set(clicked.tolist()) > history  # clicks in impressions are more than the history
    assert not set(clicked.tolist()) & set(items)  # nothing the user clicked is recommended again
    everything = trained.recommend([user], top=trained.data.num_items, include_history=True)[user]
    assert len(everything) == trained.data.num_items - 1 and max(r.score for r in everything) >= scores[0]


def test_candidates_file_and_errors(trained, tmp_path):
    file = tmp_path / "candidates.txt"
    file.write_text("D5 D7\nD9 D5\n")  # a repeat counts once
    pool = trained.candidates_from_file(file)
    user = trained.data.users[3]
    recommended = trained.recommend([user], top=10, candidates=pool, include_history=True)[user]
    assert sorted(r.item for r in recommended) == ["D5", "D7", "D9"]
    file.write_text("D5\nD-nope\n")
    with pytest.raises(DataError) as error:
        trained.candidates_from_file(file)
    assert error.value.where == f"{file}:2"
    with pytest.raises(OnceError, match="user 'U99999' is not in this run's data"):
        trained.recommend(["U99999"])


def test_cli_recommend_to_json_lines_and_export(run_dir, registry, tmp_path, capsys):
    users = tmp_path / "users.txt"
    users.write_text("U1\nU2\nU3\n")
    out = tmp_path / "recs.jsonl"
    assert cli(["recommend", str(run_dir), "--users", str(users), "--top", "3", "--out", str(out)], registry) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["user"] for line in lines] == ["U1", "U2", "U3"] and all(len(line["items"]) == 3 for line in lines)
    assert cli(["recommend", str(run_dir), "--user", "U1", "--top", "2"], registry) == 0
    assert "top 2 for user U1" in capsys.readouterr().out

    exported = tmp_path / "vectors"
    assert cli(["export", str(run_dir), str(exported)], registry) == 0
    items = load_file(str(exported / "items.safetensors"))["vectors"]
    vectors = load_file(str(exported / "users.safetensors"))["vectors"]
    item_ids = json.loads((exported / "item_ids.json").read_text())
    user_ids = json.loads((exported / "user_ids.json").read_text())
    assert items.shape[0] == len(item_ids) and vectors.shape[0] == len(user_ids) and items.shape[1] == vectors.shape[1]
    # an inner-product search over the exported vectors gives the scores `once recommend` gives
    first = next(line for line in lines if line["user"] == "U1")
    scores = items @ vectors[user_ids.index("U1")]
    exported = [float(scores[item_ids.index(item)]) for item in first["items"]]
    assert exported == pytest.approx(first["scores"], rel=1e-5, abs=1e-5)
    assert max(exported) <= float(scores.max()) + 1e-6


def test_compare_prints_and_plots(run_dir, registry, tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert cli(["compare", str(run_dir), str(run_dir), "--png", str(png)], registry) == 0
    out = capsys.readouterr().out
    assert "runs compared" in out and "95% bootstrap intervals" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "curves-groups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # beside --png


def test_runs_from_another_format_are_refused(run_dir, tmp_path, registry, capsys):
    import shutil

    copy = tmp_path / "old-run"
    shutil.copytree(run_dir, copy)
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "format": 0}))
    assert cli(["recommend", str(copy), "--user", "U1"], registry) == 2
    assert "reads format 1" in capsys.readouterr().err


def test_a_candidate_aware_model_recommends_through_its_user_encoder_and_cannot_export_users(
    registry, tmp_path, capsys
):
    overrides = [*TINY, "train.epochs=1", "model.user={name: caum, heads: 2, attention_dim: 16}"]
    run_dir = train(load_recipe("demo", registry, overrides), runs_root=tmp_path / "runs").run.path
    model = TrainedModel(run_dir, registry)
    user = model.data.users[5]
    (recommendations,) = model.recommend([user], top=6).values()
    items = [model.item_index[r.item] for r in recommendations]
    split, row = model._latest[model.user_index(user)]
    history = torch.tensor(model.data.splits[split].history[row]).unsqueeze(0)
    users = torch.tensor(model.data.splits[split].user_ids[row : row + 1])
    with torch.no_grad():  # the full model, each item scored as a candidate of its own impression
        full = model.model(history, torch.tensor([items]), users)[0]
    torch.testing.assert_close(full, torch.tensor([r.score for r in recommendations]), rtol=1e-5, atol=1e-5)
    assert cli(["export", str(run_dir), str(tmp_path / "export")], registry) == 2
    assert "depend on the candidate" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "export").exists()  # refused before anything was written


def test_a_user_conditioned_model_evaluates_but_refuses_to_rank_without_item_vectors(registry, tmp_path, capsys):
    overrides = [*(o for o in TINY if not o.startswith("model.")), "train.epochs=1"]
    overrides += ["model.item.word_dim=32", "model.item.filters=32", "model.item.query_dim=16"]
    result = train(load_recipe("demo-npa", registry, overrides), runs_root=tmp_path / "runs")
    assert cli(["eval", str(result.run.path)], registry) == 0  # the full model per impression
    assert f"{result.test['auc']:.4f}" in capsys.readouterr().out
    assert cli(["recommend", str(result.run.path), "--user", "U1"], registry) == 2
    assert "user-conditioned item encoder" in " ".join(capsys.readouterr().err.split())


def test_recommend_measures_its_lists_by_the_recipes_beyond_accuracy_metrics(registry, tmp_path, capsys):
    import math

    import numpy as np

    from once.model import item_clicks

    metrics = "eval.metrics=[auc, ild, coverage, novelty, personalisation]"
    overrides = [*TINY, "train.epochs=1", metrics]
    run_dir = train(load_recipe("demo", registry, overrides), runs_root=tmp_path / "runs").run.path
    out = tmp_path / "recs.jsonl"
    command = ["recommend", str(run_dir), "--top", "5", "--measure", "--out", str(out)]
    assert cli([*command, *(f"--user=U{i}" for i in range(1, 31))], registry) == 0
    assert "novelty@5" in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    measured = json.loads((tmp_path / "recs.jsonl.metrics.json").read_text())
    assert measured["users"] == 30 and "auc" not in measured  # AUC reads clicks: lists have none
    trained = TrainedModel(run_dir, registry)
    listed = [[trained.item_index[i] for i in line["items"]] for line in lines]
    # coverage: the share of the catalogue (every item some user could be recommended) in some list
    everything = set(range(1, trained.data.num_items))
    catalogue = set().union(
        *(everything - set(trained.seen(trained.user_index(f"U{i}")).tolist()) for i in range(1, 31))
    )
    assert measured["coverage@5"] == pytest.approx(len({i for items in listed for i in items}) / len(catalogue))
    clicks = item_clicks(trained.data).numpy().astype(float)
    information = -np.log2((clicks + 1) / (clicks.sum() + len(clicks)))
    assert measured["novelty@5"] == pytest.approx(np.mean([information[items].mean() for items in listed]))
    overlap = [len(set(a) & set(b)) / 5 for n, a in enumerate(listed) for b in listed[n + 1 :]]
    assert measured["personalisation@5"] == pytest.approx(1 - np.mean(overlap))
    assert 0 < measured["ild_vectors@5"] <= 2 and not math.isnan(measured["ild_vectors@5"])
