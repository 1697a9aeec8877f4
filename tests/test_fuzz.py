"""Property-based tests: every reader a user feeds files to either parses its input or raises our own error
naming the file and line (or recipe key) — never an unhandled exception.

Inputs are real lines (the demo corpus, the Goodreads sample in tests/data/goodreads, the built-in recipes,
the paper's GPT answers) mutated by hypothesis: characters inserted, deleted or replaced, lines truncated,
duplicated or shuffled, huge fields, NUL bytes, other encodings, empty files. `ONCE_FUZZ_EXAMPLES` raises the
number of inputs per test (default 150; `.ci/nightly` runs 3,000).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from once.errors import DataError, OnceError, RecipeError
from once.genre.paper_logs import LOGS, import_logs
from once.genre.runner import MalformedAnswer
from once.genre.store import RecordStore
from once.recipe import read_recipe_text, resolve_recipe
from once_plugins.datasets.demo import write_demo
from once_plugins.datasets.mind import read_mind
from once_plugins.datasets.parts import DemoOptions
from once_plugins.tokenizers.parts import WordsOptions
from once_plugins.tokenizers.words import WordsTokenizer

EXAMPLES = int(os.environ.get("ONCE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
DATA = Path(__file__).parent / "data" / "goodreads"
RECIPES = Path(__file__).parents[1] / "recipes"
TRIED: dict[str, int] = {}  # inputs tried per test, printed at the end of the session (see conftest)

NASTY = ["\t", "\n", "\r", "\x00", "-", "-1", "-x", " ", '"', "{", "}", "[", "]", ":", "é", "\u2028", "\ufeff", "N1"]
NASTY += [",", "null", "1e999", "NaN", '"time": "1"', '"id": 7']  # JSON lines' own (Adressa, GENRE answers)


@st.composite
def mutated(draw, lines: list[str]) -> bytes:
    """Some of `lines`, mutated, encoded (mostly as UTF-8)."""
    chosen = draw(st.lists(st.sampled_from(lines), min_size=0, max_size=8))
    text = "".join(chosen)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["insert", "delete", "truncate", "huge", "duplicate", "replace"]))
        at = draw(st.integers(0, max(0, len(text))))
        if op == "insert":
            piece = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=12)))
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif op == "truncate":
            text = text[:at]
        elif op == "huge":
            text = text[:at] + "x" * draw(st.sampled_from([1000, 100_000])) + text[at:]
        elif op == "duplicate":
            text = text[:at] + text[at:] + text[at:]
        else:
            text = text[:at] + draw(st.sampled_from(NASTY)) + text[at + 1 :]
    encoding = draw(st.sampled_from(["utf8", "utf8", "utf8", "utf8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


def count(test: str) -> None:
    TRIED[test] = TRIED.get(test, 0) + 1


def assert_located(error: OnceError, path: Path) -> None:
    """Our error, naming the file (and, for a problem on one line, the line)."""
    assert error.where and str(path) in error.where, (error, error.where)


@pytest.fixture(scope="module")
def demo_lines(tmp_path_factory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, DemoOptions(items=60, users=30))
    return {name: (folder / "train" / name).read_text().splitlines(True) for name in ("news.tsv", "behaviors.tsv")}


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory, demo_lines) -> Path:
    folder = tmp_path_factory.mktemp("mind")
    for split in ("train", "dev"):
        (folder / split).mkdir()
        for name, lines in demo_lines.items():
            (folder / split / name).write_text("".join(lines))
    return folder


@pytest.mark.parametrize("name", ["news.tsv", "behaviors.tsv"])
@FUZZ
@given(data=st.data())
def test_mind_files(name, data, demo_lines, corpus_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    shutil.copytree(corpus_folder, folder, dirs_exist_ok=True)
    path = folder / "dev" / name
    path.write_bytes(data.draw(mutated(demo_lines[name])))
    count(f"MIND {name}")
    try:
        corpus = read_mind(folder)
    except DataError as error:
        assert_located(error, path)
        return
    assert set(corpus.splits) == {"train", "dev"}
    dev = corpus.splits["dev"]
    assert len(dev.history) == len(dev.candidates) == len(dev.impression_ids)
    assert dev.candidates.values.max(initial=0) < len(corpus.items.ids)


@FUZZ
@given(data=st.data())
def test_xmind_news_files(data, demo_lines, corpus_folder, tmp_path_factory):
    from once_plugins.datasets.parts import XmindOptions
    from once_plugins.datasets.xmind import XmindDataset

    rows = [line.rstrip("\n").split("\t") for line in demo_lines["news.tsv"]]
    lines = [f"{row[0]}\t{row[3][::-1]}\t{row[4][::-1]}\n" for row in rows]  # "translated" titles, abstracts
    folder = tmp_path_factory.mktemp("xmind")
    for split in ("xMINDsmall_train", "xMINDsmall_dev"):
        (folder / split).mkdir()
        (folder / split / "news.tsv").write_text("".join(lines))
    path = folder / "xMINDsmall_dev" / "news.tsv"
    path.write_bytes(data.draw(mutated(lines)))
    count("xMIND news.tsv")
    try:
        corpus = XmindDataset(XmindOptions(path=corpus_folder, news=folder, untranslated="english")).read()
    except DataError as error:
        assert_located(error, path)
        return
    assert len(corpus.items.text["title"]) == len(corpus.items.ids)


@FUZZ
@given(data=st.data())
def test_glove_vector_files(data, tmp_path_factory):
    words = ["match", "goal", "coach", "market", "bank"]
    rng = random.Random(0)
    lines = [f"{w} {' '.join(f'{rng.uniform(-1, 1):.4f}' for _ in range(4))}\n" for w in words]
    path = tmp_path_factory.mktemp("glove") / "vectors.txt"
    path.write_bytes(data.draw(mutated(lines)))
    count("GloVe vectors")
    tokenizer = WordsTokenizer(WordsOptions(vectors=path))
    tokenizer.fit(["match goal coach", "market bank"])
    try:
        vectors = tokenizer.word_vectors()
    except DataError as error:
        assert_located(error, path)
        return
    assert vectors.shape[0] == tokenizer.vocab_size and vectors.isfinite().all()


RECIPE_LINES = [line for p in sorted(RECIPES.glob("*.yaml")) for line in p.read_text().splitlines(True)]


@FUZZ
@given(data=st.data())
def test_recipes(data, registry):
    raw = data.draw(mutated(RECIPE_LINES))
    count("recipes")
    try:
        text = raw.decode("utf8")
        resolved = resolve_recipe(text, registry, [], label="fuzzed.yaml", base_dir=RECIPES)
    except UnicodeDecodeError:
        return  # read_recipe_text turns this into an error naming the file (tested below)
    except RecipeError as error:
        assert error.where and error.where.startswith("fuzzed.yaml"), error
        return
    assert resolved.recipe.model.item.name


def test_undecodable_and_oversized_recipes_are_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(OnceError, match="UTF-8"):
        read_recipe_text(path)
    path.write_text("description: " + "x" * 2_000_000 + "\n")
    with pytest.raises(RecipeError, match="larger than"):
        read_recipe_text(path)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['touch pwned']\n",
        "description: !!python/object/new:os.system [touch pwned]\n",
        "model: &a [*a]\n",
        "a: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
    ],
)
def test_recipes_never_execute_or_expand_tags(text, registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError):
        resolve_recipe(text, registry, [], label="evil.yaml", base_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def paper_answers() -> dict[str, list[str]]:
    summaries = [line.split("\t", 1)[1] for line in (DATA / "book_summarizer.log").read_text().splitlines()]
    profiles = [json.dumps({"interests": json.loads(line)["interest"]}) for line in (DATA / "user_profiler.log").open()]
    generated = [json.loads(line)["book"] for line in (DATA / "generator_v1.log").open()]
    return {"summarize": summaries, "profile": profiles, "generate": generated}


ANSWERS = paper_answers()


@pytest.mark.parametrize("scheme", ["summarize", "profile", "generate"])
@FUZZ
@given(data=st.data())
def test_genre_answer_parsing(scheme, data, registry):
    from once.genre.command import build_scheme
    from once.recipe import GenreSection

    books = GenreSection(schemes={scheme: {"flavour": "books"}})
    parser = build_scheme(books, scheme, registry)
    answer = data.draw(mutated(ANSWERS[scheme])).decode("utf8", errors="replace")
    count(f"GENRE {scheme} answers")
    try:
        parsed = parser.parse(answer, {"title": "Grendel"})
    except MalformedAnswer as error:
        assert len(str(error)) > 5  # says what is wrong, for the answer file's record
        return
    json.dumps(parsed)  # what is kept is plain JSON


@pytest.mark.parametrize("log", sorted(LOGS))
@FUZZ
@given(data=st.data())
def test_imported_paper_logs(log, data, registry, tmp_path_factory):
    folder = tmp_path_factory.mktemp("logs")
    for name in LOGS:
        shutil.copy(DATA / name, folder / name)
    lines = (DATA / log).read_text().splitlines(True)
    (folder / log).write_bytes(data.draw(mutated(lines[:12])))
    count(f"paper log {log}")
    try:
        written = import_logs(folder, folder / "out", registry)
    except DataError as error:
        assert_located(error, folder)
        return
    assert set(written) == {"summarize", "profile", "generate"}


@FUZZ
@given(data=st.data())
def test_answer_stores(data, tmp_path_factory):
    records = [
        json.dumps({"id": f"b{i}", "status": "ok", "answer": a, "value": a, "attempts": 1}) + "\n"
        for i, a in enumerate(ANSWERS["summarize"][:8])
    ]
    path = tmp_path_factory.mktemp("store") / "summarize.jsonl"
    path.write_bytes(data.draw(mutated(records)))
    count("GENRE answer files")
    try:
        store = RecordStore(path)
    except DataError as error:
        assert_located(error, path)
        return
    assert all(isinstance(key, str) for key in store.values())


def test_an_ok_answer_without_its_value_is_refused(tmp_path):
    """Found by the nightly fuzz (3,000 inputs per reader): a key mangled into "alue" was a KeyError later."""
    path = tmp_path / "summarize.jsonl"
    path.write_text(json.dumps({"id": "b2", "status": "ok", "answer": "A novel.", "alue": "A novel."}) + "\n")
    with pytest.raises(DataError, match='without its "value"') as error:
        RecordStore(path)
    assert error.value.where == f"{path}:1"


@FUZZ
@given(texts=st.lists(st.text(max_size=3000), min_size=1, max_size=5), limit=st.integers(1, 40))
def test_the_words_tokenizer_takes_any_text(texts, limit):
    """Whatever text reaches the tokenizer (control characters, huge titles, other scripts) tokenizes."""
    count("texts to tokenize")
    tokenizer = WordsTokenizer(WordsOptions())
    tokenizer.fit(texts)
    for text in texts:
        ids = tokenizer.encode(text, limit)
        assert len(ids) <= limit and all(0 < i < tokenizer.vocab_size for i in ids)


@pytest.fixture(scope="module")
def ebnerd_folder(tmp_path_factory) -> Path:
    from ebnerd_files import write_ebnerd

    return write_ebnerd(tmp_path_factory.mktemp("ebnerd"))


@st.composite
def damaged(draw, raw: bytes) -> bytes:
    """A Parquet file's bytes, damaged: truncated (a lost footer), bytes overwritten, a range zeroed, junk added."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "overwrite", "zero", "append"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "truncate":
            data = data[:at]
        elif op == "overwrite" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "zero":
            data[at : at + draw(st.integers(1, 64))] = bytes(min(64, len(data) - at))
        else:
            data += draw(st.binary(max_size=64))
    return bytes(data)


@pytest.mark.parametrize("name", ["articles.parquet", "validation/behaviors.parquet", "validation/history.parquet"])
@FUZZ
@given(data=st.data())
def test_ebnerd_files(name, data, ebnerd_folder, tmp_path_factory):
    from once_plugins.datasets.ebnerd import read_ebnerd

    folder = tmp_path_factory.mktemp("case")
    shutil.copytree(ebnerd_folder, folder, dirs_exist_ok=True)
    path = folder / name
    path.write_bytes(data.draw(damaged(path.read_bytes())))
    count(f"EB-NeRD {name}")
    try:
        corpus = read_ebnerd(folder)
        parts = list(corpus.splits["dev"].parts())  # the behaviours are read part by part: damage may surface here
    except DataError as error:  # damage may surface where two files disagree: the error names the damaged one
        if path.name not in error.message:
            assert_located(error, path)
        return
    for dev in parts:
        assert len(dev.history) == len(dev.candidates) == len(dev.labels) == len(dev.impression_ids)
        assert dev.candidates.values.max(initial=0) < len(corpus.items.ids)


@pytest.fixture(scope="module")
def interactions_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A CSV log, a JSON lines item table and a Parquet log in the interactions reader's schemas."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("interactions")
    rows = [(f"u{u}", f"B{(u * 7 + i * 3) % 20 + 1}", i) for u in range(12) for i in range(5)]
    (folder / "log.csv").write_text("user,item,time\n" + "".join(f"{u},{b},{t}\n" for u, b, t in rows))
    items = "".join(json.dumps({"id": f"B{b}", "title": f"book {b}", "genre": "x"}) + "\n" for b in range(1, 21))
    (folder / "items.jsonl").write_text(items)
    columns = list(zip(*rows, strict=True))
    pq.write_table(pa.table({"user": columns[0], "item": columns[1], "time": columns[2]}), folder / "log.parquet")
    return folder / "log.csv", folder / "items.jsonl", folder / "log.parquet"


@pytest.mark.parametrize("which", [0, 1, 2], ids=["log.csv", "items.jsonl", "log.parquet"])
@FUZZ
@given(data=st.data())
def test_interactions_files(which, data, interactions_files, tmp_path_factory):
    from once_plugins.datasets.interactions import read_interactions
    from once_plugins.datasets.parts import InteractionsOptions

    folder = tmp_path_factory.mktemp("case")
    paths = [Path(shutil.copy(p, folder)) for p in interactions_files]
    path = paths[which]
    path.write_bytes(data.draw(damaged(path.read_bytes())))
    count(f"interactions {path.name}")
    log = paths[2] if which == 2 else paths[0]
    options = InteractionsOptions(
        log=log,
        items=paths[1],
        columns={"user": "user", "item": "item", "time": "time"},
        item_columns={"id": "id", "text": ["title"], "categories": ["genre"]},
        eval_negatives=5,
    )
    try:
        corpus = read_interactions(options)
    except DataError as error:
        if error.where and error.where.startswith("dataset."):  # the protocol's own limits name the recipe key
            return
        assert_located(error, path if path.name in error.where else log)
        return
    test = corpus.splits["test"]
    assert len(test.history) == len(test.candidates) == len(test.labels) == len(test.impression_ids)
    assert test.candidates.values.max(initial=0) < len(corpus.items.ids)
    assert (test.labels.values >= 0).all()
