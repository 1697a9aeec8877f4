from mind_files import write_mind

from once.data.prepare import prepare
from once.recipe import load_recipe


def resolve(registry, root, *overrides):
    return load_recipe(
        "mind-nrms", registry, [f"dataset.path={root}", "items.text={title: 4, abstract: 3}", *overrides]
    )


def test_tokenized_cache_is_reused_and_rebuilt_when_inputs_change(tmp_path, registry):
    root = write_mind(tmp_path / "mind")
    first = prepare(resolve(registry, root))
    stamp = (first.folder / "meta.json").stat().st_mtime_ns
    again = prepare(resolve(registry, root))
    assert again.key == first.key and (again.folder / "meta.json").stat().st_mtime_ns == stamp

    assert prepare(resolve(registry, root, "tokenizer.min_freq=2")).key != first.key
    assert prepare(resolve(registry, root, "items.text={title: 5}")).key != first.key
    news = root / "train" / "news.tsv"
    news.write_text(news.read_text(encoding="utf8").replace("Storm hits", "Storm leaves"), encoding="utf8")
    assert prepare(resolve(registry, root)).key != first.key


def test_tensors_hold_truncated_tokens_and_category_ids(tmp_path, registry):
    data = prepare(resolve(registry, write_mind(tmp_path / "mind")))
    vocab = data.tokenizer_state["vocab"]
    title = data.features["title"]
    assert title.shape == (5, 4) and title[0].tolist() == [0, 0, 0, 0]  # row 0 is the padding item
    assert [vocab[i] for i in title[1].tolist()] == ["the", "match", "ended", "in"]  # truncated to 4
    assert data.features["abstract"][3].tolist() == [0, 0, 0]  # N3 has no abstract
    assert data.category_sizes == {"category": 4, "subcategory": 5}
    assert data.users == ["", "U1", "U2"]
    train = data.splits["train"]
    assert train.users.tolist() == [1, 2, 1]
    assert train.labels[0].tolist() == [0, 1, 0]
