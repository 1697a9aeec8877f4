import pytest
from mind_files import write_mind

from once.assembly import load_data
from once.errors import DataError, RecipeError
from once.model import build_recommender
from once.recipe import load_recipe


def resolve(registry, root, *overrides):
    return load_recipe(
        "mind-nrms", registry, [f"dataset.path={root}", "items.text={title: 4, abstract: 3}", *overrides]
    )


def test_tokenized_cache_is_reused_and_rebuilt_when_inputs_change(tmp_path, registry):
    root = write_mind(tmp_path / "mind")
    first = load_data(resolve(registry, root))
    stamp = (first.folder / "meta.json").stat().st_mtime_ns
    again = load_data(resolve(registry, root))
    assert again.key == first.key and (again.folder / "meta.json").stat().st_mtime_ns == stamp

    assert load_data(resolve(registry, root, "tokenizer.min_freq=2")).key != first.key
    assert load_data(resolve(registry, root, "items.text={title: 5}")).key != first.key
    news = root / "train" / "news.tsv"
    news.write_text(news.read_text(encoding="utf8").replace("Storm hits", "Storm leaves"), encoding="utf8")
    assert load_data(resolve(registry, root)).key != first.key


def test_tensors_hold_truncated_tokens_and_category_ids(tmp_path, registry):
    data = load_data(resolve(registry, write_mind(tmp_path / "mind")))
    vocab = data.tokenizer_state["vocab"]
    title = data.features["title"]
    assert title.shape == (5, 4) and title[0].tolist() == [0, 0, 0, 0]  # row 0 is the padding item
    assert [vocab[i] for i in title[1].tolist()] == ["the", "match", "ended", "in"]  # truncated to 4
    assert data.features["abstract"][3].tolist() == [0, 0, 0]  # N3 has no abstract
    assert data.category_sizes == {"category": 4, "subcategory": 5}
    assert data.users == ["", "U1", "U2"] and data.known_users == 3
    assert data.titles[2] == "Stocks rise again"
    train = data.splits["train"]
    assert train.user_ids.tolist() == [1, 2, 1]
    assert train.labels[0].tolist() == [0, 1, 0]


def test_word_vectors_initialise_the_embedding(tmp_path, registry):
    root = write_mind(tmp_path / "mind")
    vectors = tmp_path / "glove.txt"
    vectors.write_text("the 0.5 0.25 0\nmatch 1 2 3\nnot-in-vocab 9 9 9\n", encoding="utf8")
    small = ["model.item.heads=1", "model.item.head_dim=4", "model.user.heads=1", "model.user.head_dim=4"]
    resolved = resolve(registry, root, f"tokenizer.vectors={vectors}", "model.item.word_dim=3", *small)
    data = load_data(resolved)
    vocab = data.tokenizer_state["vocab"]
    assert data.word_vectors[vocab.index("match")].tolist() == [1.0, 2.0, 3.0]
    assert data.word_vectors[0].tolist() == [0.0, 0.0, 0.0]  # padding
    model = build_recommender(resolved, data)
    assert model.item_encoder.embedding.weight[vocab.index("the")].tolist() == [0.5, 0.25, 0.0]

    with pytest.raises(RecipeError, match="word_dim is 4 but the tokenizer's vectors have 3 dimensions"):
        build_recommender(
            resolve(registry, root, f"tokenizer.vectors={vectors}", "model.item.word_dim=4", *small), data
        )
    vectors.write_text("the 0.5 0.25 0\nmatch 1 2\n", encoding="utf8")
    with pytest.raises(DataError) as error:
        load_data(resolve(registry, root, f"tokenizer.vectors={vectors}", "model.item.word_dim=3", *small))
    assert error.value.where == f"{vectors}:2" and "expected 3 numbers, found 2" in error.value.message


def test_histories_shared_by_a_users_impressions_are_stored_once(tmp_path, registry):
    """MIND's history column repeats for every impression of a user in a split: the reader keeps one copy and a row
    map, the cache writes it so, and each impression still reads its own history."""
    from mind_files import BEHAVIORS

    from once_plugins.datasets.mind import read_mind

    root = write_mind(tmp_path / "mind", behaviors=[*BEHAVIORS, "4\tU1\t11/14/2019 1:05:58 PM\tN1\tN2-1 N4-0"])
    train = read_mind(root).splits["train"]
    assert len(train.history) == 4 and train.history.offsets.tolist() == [0, 2, 2, 3]  # "N1" stored once
    assert train.history.rows.tolist() == [0, 1, 2, 2] and [list(train.history[i]) for i in range(4)][2:] == [[1], [1]]
    split = load_data(resolve(registry, root)).splits["train"]
    assert split.history.rows is not None and split.history.lengths.tolist() == [2, 0, 1, 1]
    assert split.history.padded([0, 3], 2).tolist() == [[1, 3], [1, 0]]


def test_parts_with_their_own_shared_or_no_history_tables_store_the_rows_they_hold(tmp_path):
    """The engine's side of ImpressionParts: whatever mix of parts a reader yields, every stored row reads back
    as the part that held it."""
    import numpy as np

    from once.data.prepare import _UserCodes, _write_split
    from once.data.tables import ImpressionParts, Impressions, Ragged

    rng = np.random.default_rng(0)
    table = Ragged.from_rows([rng.integers(1, 50, rng.integers(0, 5)).tolist() for _ in range(4)])  # 4 users

    def part(first: int, rows: int, history: str) -> Impressions:
        users = rng.integers(0, 4, rows)
        listed = Ragged.from_rows([[7, 8], *(rng.integers(1, 50, rng.integers(1, 4)).tolist() for _ in range(rows))])
        candidates = Ragged(listed.values, listed.offsets[1:])  # a view past a first row: offsets from 2, not 0
        own = Ragged.from_rows([table[u].tolist() for u in users])
        shared = Ragged(table.values, table.offsets, users)
        separate = Ragged(table.values.copy(), table.offsets.copy(), users)
        return Impressions(
            [f"i{first + r}" for r in range(rows)],
            [f"u{u}" for u in users],
            {"own": own, "shared": shared, "separate": separate}[history],
            candidates,
            Ragged((candidates.values % 2).astype(np.int8), candidates.offsets),
        )

    parts = [part(0, 3, "own"), part(3, 2, "shared"), part(5, 4, "shared"), part(9, 1, "own"), part(10, 3, "separate")]
    parts.append(part(13, 2, "shared"))  # the first shared table again, after other tables
    _write_split(tmp_path / "train", ImpressionParts(lambda: iter(parts), 15), codes := _UserCodes(), training=True)
    users, known = codes.ordered(tmp_path, ["train"])
    stored = {path.stem: np.load(path) for path in (tmp_path / "train").glob("*.npy")}
    history = Ragged(stored["history.values"], stored["history.offsets"], stored["history.rows"])
    candidates = Ragged(stored["candidates.values"], stored["candidates.offsets"])
    assert len(stored["history.offsets"]) - 1 == 3 + 4 + 1 + 4  # own rows, the shared table once, a second table
    row = 0
    for held in parts:
        for r in range(len(held)):
            assert stored["impression_ids"][row] == held.impression_ids[r]
            assert users[stored["user_ids"][row]] == held.user_ids[r] and known == len(users)
            assert history[row].tolist() == held.history[r].tolist()
            assert candidates[row].tolist() == held.candidates[r].tolist()
            assert stored["labels.values"][candidates.offsets[row] : candidates.offsets[row + 1]].tolist() == (
                held.labels[r].tolist()
            )
            assert stored["real_history"][row] == len(held.history[r])
            row += 1
    assert row == 15
