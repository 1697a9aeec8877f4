"""The embedded demo: a deterministic synthetic corpus in MIND format, generated on first use.

Items have topical titles and categories; users prefer a few topics and click mostly within them, so a
content-based recommender has real signal to learn. Each topic word of a title is linked to an entity (MIND's
title entities column), and entity_embedding.vec gives every entity a vector near its topic's, as TransE
vectors of related entities lie near each other. `once data demo OUT` writes the files.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from once.api import Corpus, building, cache_root
from once_plugins.datasets.mind import read_mind
from once_plugins.datasets.parts import DemoOptions

GENERATOR_VERSION = 2
ENTITY_DIM = 100  # as MIND's entity_embedding.vec
TOPICS: dict[str, list[str]] = {
    "sports": [
        "match",
        "goal",
        "coach",
        "league",
        "season",
        "striker",
        "playoff",
        "stadium",
        "tournament",
        "champion",
        "referee",
        "transfer",
    ],
    "finance": [
        "market",
        "stocks",
        "investor",
        "bank",
        "inflation",
        "bond",
        "earnings",
        "rates",
        "trading",
        "dividend",
        "merger",
        "fund",
    ],
    "health": [
        "doctor",
        "vaccine",
        "hospital",
        "diet",
        "patients",
        "virus",
        "therapy",
        "nurse",
        "fitness",
        "sleep",
        "disease",
        "clinic",
    ],
    "technology": [
        "software",
        "chip",
        "startup",
        "robot",
        "phone",
        "cloud",
        "data",
        "privacy",
        "app",
        "laptop",
        "algorithm",
        "network",
    ],
    "travel": [
        "flight",
        "island",
        "beach",
        "hotel",
        "passport",
        "cruise",
        "resort",
        "airline",
        "luggage",
        "tourist",
        "museum",
        "hiking",
    ],
    "food": [
        "recipe",
        "chef",
        "restaurant",
        "pasta",
        "dessert",
        "vegan",
        "bakery",
        "wine",
        "cheese",
        "grill",
        "spice",
        "breakfast",
    ],
    "weather": [
        "storm",
        "hurricane",
        "rain",
        "snow",
        "forecast",
        "heatwave",
        "flood",
        "tornado",
        "drought",
        "wind",
        "frost",
        "climate",
    ],
    "politics": [
        "senate",
        "election",
        "governor",
        "vote",
        "congress",
        "campaign",
        "policy",
        "mayor",
        "ballot",
        "debate",
        "law",
        "court",
    ],
    "entertainment": [
        "movie",
        "actor",
        "concert",
        "album",
        "festival",
        "celebrity",
        "series",
        "premiere",
        "director",
        "award",
        "song",
        "show",
    ],
    "autos": [
        "car",
        "truck",
        "engine",
        "electric",
        "dealer",
        "highway",
        "recall",
        "sedan",
        "battery",
        "mileage",
        "racing",
        "garage",
    ],
}
FILLER = [
    "new",
    "the",
    "a",
    "of",
    "in",
    "on",
    "for",
    "with",
    "after",
    "over",
    "how",
    "why",
    "what",
    "best",
    "top",
    "first",
    "big",
    "week",
    "day",
    "year",
    "people",
    "report",
    "says",
    "could",
    "will",
    "more",
    "about",
    "up",
    "out",
    "just",
    "now",
    "get",
    "make",
]


class DemoDataset:
    """The synthetic corpus, generated into the cache folder on first use and read with the MIND reader."""

    def __init__(self, options: DemoOptions, context: object = None) -> None:
        self.options = options

    def fingerprint(self) -> str:
        content = json.dumps(
            {"version": GENERATOR_VERSION, **self.options.model_dump(exclude={"size"})}, sort_keys=True
        )
        return hashlib.sha256(content.encode()).hexdigest()

    def folder(self) -> Path:
        folder = cache_root() / "demo" / self.fingerprint()[:16]
        if not folder.exists():
            with building(folder) as tmp:
                write_demo(tmp, self.options)
        return folder

    def read(self) -> Corpus:
        return read_mind(self.folder())

    def export(self, out: Path) -> None:
        write_demo(out, self.options)


def _words(rng: random.Random, topic: str, count: int) -> str:
    own = rng.sample(TOPICS[topic], k=min(count // 2 + 1, len(TOPICS[topic])))
    words = own + rng.choices(FILLER, k=count - len(own))
    rng.shuffle(words)
    return " ".join(words).capitalize()


def _entity_ids() -> dict[str, str]:
    """Topic word -> its (made-up) Wikidata-style entity id."""
    words = sorted(word for words in TOPICS.values() for word in words)
    return {word: f"Q{1000 + i}" for i, word in enumerate(words)}


def _linked_entities(title: str, entity_of: dict[str, str]) -> str:
    """The title entities column: each topic word of the title, with its offset, as MIND writes it."""
    records, offset = [], 0
    for word in title.split(" "):
        entity = entity_of.get(word.lower())
        if entity:
            records.append(
                {
                    "Label": word.lower(),
                    "Type": "C",
                    "WikidataId": entity,
                    "Confidence": 1.0,
                    "OccurrenceOffsets": [offset],
                    "SurfaceForms": [word],
                }
            )
        offset += len(word) + 1
    return json.dumps(records)


def _entity_vectors(seed: int, entity_of: dict[str, str]) -> str:
    """entity_embedding.vec: each entity's vector is its topic's centre plus noise (its own random stream, so the
    corpus itself does not change with it)."""
    rng = random.Random(seed + 1)
    centres = {topic: [rng.gauss(0, 1) for _ in range(ENTITY_DIM)] for topic in sorted(TOPICS)}
    lines = []
    for topic, words in sorted(TOPICS.items()):
        for word in words:
            values = (c + rng.gauss(0, 0.5) for c in centres[topic])
            lines.append(entity_of[word] + "\t" + "\t".join(f"{v:.6f}" for v in values) + "\n")
    return "".join(lines)


def _history_item(rng: random.Random, by_topic: dict[str, list[int]], liked: set[str], items: int) -> int:
    """Mostly an item of a liked topic, sometimes any item (also when a tiny corpus lacks the topic)."""
    if rng.random() < 0.85:
        members = by_topic[rng.choice(sorted(liked))]
        if members:
            return rng.choice(members)
    return rng.randrange(items)


def write_demo(out: Path, options: DemoOptions) -> None:
    """Write train/, dev/ and test/ (news.tsv + behaviors.tsv) under `out`."""
    rng = random.Random(options.seed)
    topics = sorted(TOPICS)
    entity_of = _entity_ids()
    news, topic_of = [], []
    for i in range(options.items):
        topic = rng.choice(topics)
        sub = f"{topic}-{rng.randint(1, 3)}"
        title = _words(rng, topic, rng.randint(6, 10))
        abstract = _words(rng, topic, rng.randint(14, 24)) + "."
        news.append(f"D{i + 1}\t{topic}\t{sub}\t{title}\t{abstract}\t\t{_linked_entities(title, entity_of)}\t[]\n")
        topic_of.append(topic)
    by_topic = {t: [i for i, x in enumerate(topic_of) if x == t] for t in topics}
    rows: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    impression = 0
    for u in range(options.users):
        liked = set(rng.sample(topics, k=2))
        history = [_history_item(rng, by_topic, liked, options.items) for _ in range(rng.randint(3, 20))]
        plan = ["train"] * options.impressions + ["dev", "test"]
        for split in plan:
            shown = rng.sample(range(options.items), k=options.candidates)
            clicks = [int(rng.random() < (0.4 if topic_of[i] in liked else 0.03)) for i in shown]
            if not any(clicks):
                pool = [i for i in by_topic[rng.choice(sorted(liked))] if i not in shown]
                if pool:
                    shown[0] = rng.choice(pool)
                clicks[0] = 1  # a tiny corpus may have nothing of that topic left to show
            if all(clicks):
                clicks[-1] = 0
            impression += 1
            tokens = " ".join(f"D{i + 1}-{c}" for i, c in zip(shown, clicks, strict=True))
            hour = 1 + impression % 12
            rows[split].append(
                f"{impression}\tU{u + 1}\t11/{9 + plan.index(split)}/2019 {hour}:00:00 AM\t"
                f"{' '.join(f'D{i + 1}' for i in history)}\t{tokens}\n"
            )
    for split, lines in rows.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "news.tsv").write_text("".join(news), encoding="utf8")
        (folder / "behaviors.tsv").write_text("".join(lines), encoding="utf8")
        (folder / "entity_embedding.vec").write_text(_entity_vectors(options.seed, entity_of), encoding="utf8")
