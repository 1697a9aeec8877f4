"""`once data NAME OUT` for every reader: the corpus as MIND files that the MIND reader reads back the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ebnerd_files import write_behaviors, write_ebnerd, write_history
from test_interactions import amazon_files

from once.cli import run as cli
from once.data.export import mind_columns
from once.data.tables import Corpus
from once_plugins.datasets.ebnerd import read_ebnerd
from once_plugins.datasets.mind import read_mind


def assert_same_corpus(original: Corpus, written: Corpus) -> None:
    """The same items (ids, texts and categories in MIND's columns, training items) and impressions, by item id."""
    a, b = original.items, written.items
    index = {item: i for i, item in enumerate(b.ids)}
    assert sorted(a.ids) == sorted(b.ids)
    title, abstract, category, subcategory = mind_columns(a)
    for i, item in enumerate(a.ids[1:], 1):
        j = index[item]
        assert b.text["title"][j] == a.text[title][i]
        assert b.text["abstract"][j] == (a.text[abstract][i] if abstract else "")
        assert b.categories["category"][j] == (a.categories[category][i] if category else "")
        assert b.categories["subcategory"][j] == (a.categories[subcategory][i] if subcategory else "")
        assert bool(b.in_train[j]) == bool(a.in_train[i])
    assert set(original.splits) == set(written.splits)
    for name, source in original.splits.items():
        (split,), (other,) = source.parts(), written.splits[name].parts()  # fixtures: one part each
        assert list(other.impression_ids) == list(split.impression_ids) and other.user_ids == split.user_ids
        for row in range(len(split)):
            for ragged in ("history", "candidates"):
                ids = [a.ids[i] for i in getattr(split, ragged)[row]]
                assert [b.ids[i] for i in getattr(other, ragged)[row]] == ids
            np.testing.assert_array_equal(other.labels[row], split.labels[row])


def test_ebnerd_with_its_unlabeled_test_set_is_written_as_mind_files(tmp_path, registry):
    root = write_ebnerd(tmp_path / "ebnerd")
    testset = tmp_path / "testset"
    (testset / "test").mkdir(parents=True)
    write_behaviors(testset / "test" / "behaviors.parquet", [(7, 101, [9000005, 9000001], None)], labeled=False)
    write_history(testset / "test" / "history.parquet")
    out = tmp_path / "mind"
    assert cli(["data", "ebnerd", str(out), f"--set=path={root}", f"--set=test={testset}"], registry) == 0
    assert_same_corpus(read_ebnerd(root, test=testset), read_mind(out))
    assert (out / "test" / "behaviors.tsv").read_text().split("\t")[-1].strip() == "9000005 9000001"  # no labels


def test_an_interaction_log_is_written_as_mind_files(tmp_path, registry):
    from test_interactions import amazon_options

    from once_plugins.datasets.interactions import read_interactions

    log, items = amazon_files(tmp_path)
    options = amazon_options(log, items)
    out = tmp_path / "mind"
    sets = [f"--set=log={log}", f"--set=items={items}"]
    sets += [f"--set={k}={v}" for k, v in options.model_dump(exclude={"log", "items"}, exclude_defaults=True).items()]
    assert cli(["data", "interactions", str(out), *sets], registry) == 0
    assert_same_corpus(read_interactions(options), read_mind(out))


def test_ebnerd_read_in_parts_is_written_as_when_read_whole(tmp_path, registry, monkeypatch):
    from once_plugins.datasets import ebnerd

    root = write_ebnerd(tmp_path / "ebnerd")
    written = {}
    for part_rows in (ebnerd.PART_ROWS, 1):  # one row a part: every split in several parts
        monkeypatch.setattr(ebnerd, "PART_ROWS", part_rows)
        out = tmp_path / f"mind{part_rows}"
        assert cli(["data", "ebnerd", str(out), f"--set=path={root}"], registry) == 0
        written[part_rows] = {path.relative_to(out): path.read_text() for path in sorted(out.rglob("*.tsv"))}
    whole, parts = written.values()
    assert whole == parts and len(whole) == 4
    assert len(whole[Path("train") / "behaviors.tsv"].splitlines()) == 2
