"""Item side features: MIND's linked entities, read and aligned with the title's tokens."""

import json

import pytest
from mind_files import NEWS, write_mind

from once.assembly import load_data
from once.errors import DataError, RecipeError
from once.recipe import load_recipe
from once_plugins.datasets.mind import read_mind


def linked(*entities: tuple[str, str]) -> str:
    return json.dumps(
        [{"Label": s, "Type": "P", "WikidataId": e, "Confidence": 1.0, "OccurrenceOffsets": [0], "SurfaceForms": [s]}
         for e, s in entities]
    )


def news_with_entities() -> list[str]:
    rows = [line.split("\t") for line in NEWS]
    rows[0][6] = linked(("Q1", "match"), ("Q2", "a draw"))  # "The match ended in a draw"
    rows[2][6] = linked(("Q3", "Champion"), ("Q9", "Wimbledon"))  # Q9's form is not in the title
    rows[3][6] = linked(("Q4", "coast"))  # N4 is listed in train too: a training item
    return ["\t".join(row) for row in rows]


def write(root, vectors: dict[str, list[float]] | None = None):
    write_mind(root, news=news_with_entities())
    if vectors is not None:
        lines = "".join(f"{e}\t" + "\t".join(str(v) for v in values) + "\t\n" for e, values in vectors.items())
        (root / "train" / "entity_embedding.vec").write_text(lines, encoding="utf8")
    return root


def test_the_reader_keeps_entity_links_and_vectors(tmp_path):
    corpus = read_mind(write(tmp_path, {"Q1": [0.5, -1.0], "Q3": [2.0, 0.25]}))
    assert corpus.items.entities["title"][1] == [("Q1", "match"), ("Q2", "a draw")]
    assert corpus.items.entities["title"][2] == [] and corpus.items.entities["abstract"][1] == []
    assert corpus.items.entity_vectors["Q3"].tolist() == [2.0, 0.25]


@pytest.mark.parametrize(
    ("cell", "message"),
    [('[{"SurfaceForms": ["x"]}]', "KeyError"), ("[{not json", "JSONDecodeError")],
)
def test_a_bad_entity_column_names_file_line_and_column(tmp_path, cell, message):
    rows = [line.split("\t") for line in NEWS]
    rows[1][6] = cell
    write_mind(tmp_path, news=["\t".join(row) for row in rows])
    with pytest.raises(DataError) as error:
        read_mind(tmp_path)
    assert error.value.where.endswith("train/news.tsv:2") and "column 7 (title entities)" in str(error.value)
    assert message in str(error.value)


def test_a_ragged_vectors_file_names_its_line(tmp_path):
    root = write(tmp_path, {"Q1": [0.5, -1.0]})
    (root / "train" / "entity_embedding.vec").write_text("Q1\t0.5\t-1\nQ2\t0.5\n", encoding="utf8")
    with pytest.raises(DataError, match="expected 2 numbers") as error:
        read_mind(root)
    assert error.value.where.endswith("entity_embedding.vec:2")


def resolve(registry, root, *overrides):
    return load_recipe(
        "mind-nrms", registry, [f"dataset.path={root}", "items.text={title: 6}", "items.entities=[title]", *overrides]
    )


def test_entities_are_aligned_with_the_title_tokens(tmp_path, registry):
    data = load_data(resolve(registry, write(tmp_path, {"Q1": [0.5, -1.0], "Q9": [1.0, 1.0]})))
    entity_ids = ["", "Q1", "Q2", "Q3", "Q4", "Q9"]  # trained-item links and those with a vector
    assert data.entities == len(entity_ids)
    aligned = data.features["title_entities"]
    # "the match ended in a draw" (6 tokens): match -> Q1, "a draw" -> Q2 on both of its tokens
    assert aligned[1].tolist() == [0, 1, 0, 0, 2, 2]
    assert aligned[3].tolist() == [3, 0, 0, 0, 0, 0]  # "champion wins the final"; Wimbledon is not in it
    assert aligned[4].tolist() == [0, 0, 0, 4, 0, 0]  # "storm hits the coast"
    vectors = data.entity_vectors
    assert vectors.shape == (6, 2) and vectors[0].abs().sum() == 0
    assert vectors[1].tolist() == [0.5, -1.0] and vectors[5].tolist() == [1.0, 1.0]
    assert 0 < vectors[2].abs().max() < 1  # Q2 has no vector: a small random row


def test_entities_without_vectors_keep_only_those_of_training_items(tmp_path, registry):
    root = write(tmp_path)
    (root / "dev" / "news.tsv").write_text(
        "N8\tsports\tgolf\tOpen golf final\t\t\t" + linked(("Q8", "golf")) + "\t[]\n", encoding="utf8"
    )
    (root / "dev" / "behaviors.tsv").write_text("7\tU1\t11/14/2019 9:00:00 AM\tN1\tN8-1 N2-0\n", encoding="utf8")
    data = load_data(resolve(registry, root))
    assert data.entity_vectors is None and data.entities == 6  # none, then Q1-Q4 and Q9 of training items; not Q8
    assert data.features["title_entities"][data.item_ids.index("N8")].tolist() == [0] * 6


def test_entities_the_data_lacks_or_the_recipe_does_not_tokenize_are_named(tmp_path, registry):
    with pytest.raises(DataError, match="no item of this dataset links an entity in it"):
        load_data(resolve(registry, write_mind(tmp_path / "plain")))
    with pytest.raises(RecipeError, match="items.text does not tokenize"):
        resolve(registry, write(tmp_path / "mind"), "items.entities=[abstract]")
