"""The EB-NeRD reader on fixture files in the official schema, its errors, and a run that writes predictions."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from ebnerd_files import ARTICLES, BEHAVIORS, HISTORIES, write_behaviors, write_ebnerd, write_history, write_vectors

from once.assembly import load_data
from once.checkpoint import load_model
from once.cli import run as cli
from once.data.prepare import new_item_features
from once.data.tables import Ragged
from once.errors import DataError, RecipeError
from once.evaluate import evaluation_settings, score_split
from once.model import build_recommender
from once.recipe import load_recipe
from once.train import train
from once_plugins.datasets import ebnerd
from once_plugins.datasets.ebnerd import read_ebnerd


def whole(split):
    """A fixture split's impressions: one part (they are far below ebnerd.PART_ROWS)."""
    (part,) = split.parts()
    return part


def test_reads_articles_impressions_and_histories(tmp_path):
    corpus = read_ebnerd(write_ebnerd(tmp_path))
    items = corpus.items
    assert items.ids == ["", *(str(a[0]) for a in ARTICLES)]
    assert items.text["title"][2] == "Brøndby vinder derbyet" and items.text["body"][2] == ""  # empty body kept
    assert items.categories["category"][5] == "" and items.categories["subcategory"][2] == "140"
    assert set(corpus.splits) == {"train", "dev"}
    train, dev = whole(corpus.splits["train"]), whole(corpus.splits["dev"])
    assert train.impression_ids.tolist() == ["1", "2"] and train.user_ids == ["101", "102"]
    assert list(train.candidates[0]) == [1, 2, 3] and list(train.labels[0]) == [0, 1, 0]
    assert list(train.history[0]) == [2, 4]  # user 101's article_id_fixed, in order
    assert list(dev.history[1]) == [5, 3, 1] and list(dev.labels[1]) == [1, 0, 0]
    assert items.in_train.tolist() == [False, True, True, True, True, True]


def test_the_unlabeled_test_set(tmp_path):
    root = write_ebnerd(tmp_path / "ebnerd_demo")
    testset = tmp_path / "ebnerd_testset"
    (testset / "test").mkdir(parents=True)
    write_behaviors(testset / "test" / "behaviors.parquet", [(7, 101, [9000005, 9000001], None)], labeled=False)
    write_history(testset / "test" / "history.parquet")
    test = whole(read_ebnerd(root, test=testset).splits["test"])
    assert test.impression_ids.tolist() == ["7"] and list(test.labels[0]) == [-1, -1]


def test_unknown_articles_are_an_error_or_skipped(tmp_path):
    histories = {**HISTORIES, 102: [9000001, 9999999]}  # an article the table lacks, as the real files have
    root = write_ebnerd(tmp_path, histories=histories)
    with pytest.raises(DataError) as error:
        read_ebnerd(root)
    assert "article id 9999999" in error.value.message and "history.parquet: user 102" in error.value.where
    corpus = read_ebnerd(root, "skip")
    assert (
        list(whole(corpus.splits["train"]).history[1]) == [1] and "skipped 2 unknown" in corpus.notes[0]
    )  # once in each split's history.parquet


def test_bad_files_are_errors_naming_file_and_column(tmp_path):
    root = write_ebnerd(tmp_path)
    path = root / "train" / "behaviors.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(path).drop(["article_ids_inview"]), path)
    with pytest.raises(DataError) as error:
        read_ebnerd(root)
    assert "article_ids_inview missing" in error.value.message and error.value.where == str(path)
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_ebnerd(root)
    write_behaviors(path, [(1, 999, [9000001], [9000001])])
    with pytest.raises(DataError, match=r"user 999 \(behaviors.parquet row 1, impression 1\) has no row in history"):
        read_ebnerd(root)  # found before anything is written
    (root / "validation" / "history.parquet").unlink()
    write_behaviors(path, BEHAVIORS["train"])
    with pytest.raises(DataError) as error:
        read_ebnerd(root)
    assert error.value.message == "file not found" and error.value.where.endswith("validation/history.parquet")


def test_a_run_on_ebnerd_writes_the_challenges_submission(tmp_path, registry):
    root = write_ebnerd(tmp_path / "ebnerd_demo")
    testset = tmp_path / "ebnerd_testset"
    (testset / "test").mkdir(parents=True)
    rows = [(7, 101, [9000005, 9000001, 9000003], None), (8, 103, [9000002, 9000004], None)]
    write_behaviors(testset / "test" / "behaviors.parquet", rows, labeled=False)
    write_history(testset / "test" / "history.parquet")
    overrides = [f"dataset.path={root}", f"dataset.test={testset}", "tokenizer.min_freq=1", "train.epochs=1"]
    overrides += ["model.item.word_dim=16", "model.item.heads=2", "model.item.head_dim=8", "model.user.heads=2"]
    overrides += ["device=cpu"]
    runs = tmp_path / "runs"
    assert cli(["train", "ebnerd-nrms", *(f"--set={o}" for o in overrides), "--out", str(runs)], registry) == 0
    (run,) = runs.iterdir()
    predictions = tmp_path / "predictions.txt"
    assert cli(["eval", str(run), "--split", "test", "--prediction", str(predictions)], registry) == 0
    lines = predictions.read_text().splitlines()
    assert [line.split(" ")[0] for line in lines] == ["7", "8"]
    assert sorted(json.loads(lines[0].split(" ", 1)[1])) == [1, 2, 3]
    with zipfile.ZipFile(tmp_path / "predictions.zip") as archive:  # the challenge's upload: predictions.txt
        assert (
            archive.namelist() == ["predictions.txt"] and archive.read("predictions.txt").decode().splitlines() == lines
        )


VECTORS = {9000003: [0.5, -1.0, 2.0], 9000001: [1.0, 0.0, 0.25], 9000002: [0.0, 3.0, -0.5], 9999999: [9.0, 9.0, 9.0]}


def test_document_embeddings_become_item_vectors(tmp_path, registry):
    root = write_ebnerd(tmp_path / "ebnerd")
    path = write_vectors(
        tmp_path / "artifacts" / "Ekstra_Bladet_contrastive_vector" / "contrastive_vector.parquet", VECTORS
    )
    corpus = read_ebnerd(root, embeddings={"contrastive": path})
    vectors = corpus.items.vectors["contrastive"]
    assert vectors.dtype == np.float32 and vectors.shape == (6, 3)
    assert vectors[1].tolist() == [1.0, 0.0, 0.25] and vectors[3].tolist() == [0.5, -1.0, 2.0]
    assert vectors[0].tolist() == vectors[4].tolist() == vectors[5].tolist() == [0, 0, 0]  # padding; no vector
    assert any("2 of 5 articles have no vector" in note for note in corpus.notes)  # an unknown id is ignored

    overrides = [f"dataset.path={root}", f"dataset.embeddings={{contrastive: {path}}}", "device=cpu"]
    data = load_data(load_recipe("ebnerd-docvec", registry, overrides))
    assert data.features["contrastive"].dtype == torch.float32 and data.vector_dims == {"contrastive": 3}
    assert torch.equal(data.features["contrastive"], torch.from_numpy(vectors))  # stored and read back exactly
    resolved = load_recipe("ebnerd-docvec", registry, overrides)
    model = build_recommender(resolved, data)
    lacking = torch.tensor([4, 5])  # articles without a vector: all zeros, still the vector's full width
    assert model.item_features(lacking)["contrastive"].shape == (2, 3) and model.encode_items(lacking).shape[0] == 2
    assert torch.equal(model.token_counts(lacking), torch.tensor([3, 4]))  # title words only, not vector values
    with pytest.raises(DataError, match="cannot carry"):  # once serve's /items: a posted item has no such vector
        new_item_features(data, resolved.recipe.items, resolved.build("tokenizer"), [{"title": "Ny artikel"}])
    with pytest.raises(DataError, match="items.vectors names the field 'xlmr'"):
        load_data(load_recipe("ebnerd-docvec", registry, [*overrides, "items.vectors=[xlmr]"]))
    with pytest.raises(RecipeError, match="'xlmr' is not an item vector field") as error:
        build_recommender(load_recipe("ebnerd-docvec", registry, [*overrides, "model.item.field=xlmr"]), data)
    assert error.value.where == "model.item.field"


def test_bad_embedding_files_are_errors_naming_file_and_row(tmp_path):
    root = write_ebnerd(tmp_path / "ebnerd")
    path = tmp_path / "vectors.parquet"
    with pytest.raises(DataError, match="file not found"):
        read_ebnerd(root, embeddings={"v": path})
    pq.write_table(pa.table({"article_id": pa.array([9000001], pa.int32())}), path)
    with pytest.raises(DataError, match="expected article_id and one column of vectors"):
        read_ebnerd(root, embeddings={"v": path})
    pq.write_table(pa.table({"article_id": pa.array([9000001], pa.int32()), "v": pa.array(["x"])}), path)
    with pytest.raises(DataError, match="column v must hold lists of numbers"):
        read_ebnerd(root, embeddings={"v": path})
    write_vectors(path, {9000001: [1.0, 2.0], 9000002: [1.0]})
    with pytest.raises(DataError, match="vectors of different lengths") as error:
        read_ebnerd(root, embeddings={"v": path})
    assert "row 2 (article 9000002)" in error.value.where
    write_vectors(path, {9000001: [1.0, 2.0], 9000002: [float("nan"), 1.0]})
    with pytest.raises(DataError, match="nan or inf") as error:
        read_ebnerd(root, embeddings={"v": path})
    assert "row 2 (article 9000002)" in error.value.where
    write_vectors(path, {9000001: [1.0, None]})
    with pytest.raises(DataError, match="without nulls"):
        read_ebnerd(root, embeddings={"v": path})


def test_nrms_docvec_trains_on_the_vectors_and_fast_evaluation_equals_plain(tmp_path, registry):
    rng = np.random.default_rng(0)
    root = write_ebnerd(tmp_path / "ebnerd", behaviors={s: rows * 8 for s, rows in BEHAVIORS.items()})
    vectors = {a[0]: rng.normal(size=8).tolist() for a in ARTICLES}
    path = write_vectors(tmp_path / "v.parquet", vectors)
    overrides = [f"dataset.path={root}", f"dataset.embeddings={{contrastive: {path}}}", "device=cpu"]
    overrides += ["model.item.units=[16]", "model.item.dim=8", "model.user.heads=2", "model.user.query_dim=8"]
    overrides += ["train.epochs=2", "train.batch_size=4", "train.lr=0.01"]
    resolved = load_recipe("ebnerd-docvec", registry, overrides)
    result = train(resolved, runs_root=tmp_path / "runs")
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    data = load_data(resolved)
    model = build_recommender(resolved, data)
    load_model(result.run.path / "best.safetensors", model)
    model.eval()
    split = data.splits["dev"]
    settings = evaluation_settings(resolved, data, torch.device("cpu"))
    fast = score_split(model, split, **settings)
    plain = score_split(model, split, **{**settings, "fast": False})
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_split_read_in_parts_is_stored_as_when_read_whole(tmp_path, registry, monkeypatch):
    behaviors = {  # uneven parts of 3 rows, impression ids of growing width
        split: [(i * 10**k, user, inview, clicked) for k, (i, user, inview, clicked) in enumerate(rows * 4)]
        for split, rows in BEHAVIORS.items()
    }
    unsorted = dict(reversed(HISTORIES.items()))  # history.parquet's users in any order
    root = write_ebnerd(tmp_path / "ebnerd", behaviors=behaviors, histories=unsorted)
    overrides = [f"dataset.path={root}", "tokenizer.min_freq=1", "device=cpu"]
    stored = {}
    for part_rows in (ebnerd.PART_ROWS, 3):
        monkeypatch.setattr(ebnerd, "PART_ROWS", part_rows)
        monkeypatch.setenv("ONCE_CACHE", str(tmp_path / f"cache{part_rows}"))
        assert len(list(read_ebnerd(root).splits["train"].parts())) == (1 if part_rows > 8 else 3)
        data = load_data(load_recipe("ebnerd-nrms", registry, overrides))
        stored[part_rows] = (
            data.users,
            {
                f"{name}/{path.name}": np.load(path)
                for name in data.splits
                for path in (data.folder / name).glob("*.npy")
            },
        )
    (users, whole_split), (users_parts, parts) = stored.values()
    assert users == users_parts == ["", "101", "102", "103"]
    assert whole_split.keys() == parts.keys()
    for name, array in whole_split.items():
        np.testing.assert_array_equal(parts[name], array, err_msg=name)
    assert parts["train/impression_ids.npy"][-1] == "2" + "0" * 7  # the widest id, its part written last
    assert parts["train/impression_ids.npy"].dtype == np.dtype("<U8")  # as wide as the ids, not int64's 21
    assert len(parts["train/history.offsets.npy"]) == len(HISTORIES) + 1  # each user's history stored once
    history = Ragged(
        parts["train/history.values.npy"], parts["train/history.offsets.npy"], parts["train/history.rows.npy"]
    )
    assert [history[row].tolist() for row in range(2)] == [[2, 4], [1]]  # users 101 and 102, as HISTORIES has them
    assert parts["dev/user_ids.npy"].tolist() == [1, 3] * 4  # user 103 is not a training user: after them
