"""GENRE prompt schemes: `summarize` (content summarizer), `profile` (user profiler), `generate` (personalized
content generator for cold users, optionally chained after the profiler). News and book flavours each; the prompt
wording is ours. A recipe may replace a scheme's `system` and `template` text: `$name` placeholders (string.Template,
so JSON braces need no escaping) take the item's fields, or `$history` and `$profile` for user schemes.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from typing import Any

import numpy as np

from once.api import SPLITS, Corpus, MalformedAnswer, RecipeError, Request, profile_text
from once_plugins.genre.parts import GenerateOptions, SchemeOptions, UserSchemeOptions

NEWS_TOPICS = (
    "health", "education", "travel", "religion", "culture", "food", "fashion", "technology", "social media",
    "gender and sexuality", "race and ethnicity", "history", "economy", "finance", "real estate", "transportation",
    "weather", "disasters", "international news",
)  # fmt: skip
US_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
    "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada",
    "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma",
    "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah",
    "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming",
)  # fmt: skip
REFUSAL = re.compile(r"^(sorry|i'm sorry|i am sorry|i apologi[sz]e|as an ai|i cannot|i can't|i am unable)", re.I)

PROMPTS: dict[str, dict[str, tuple[str, str]]] = {
    "summarize": {
        "news": (
            "You rewrite news headlines so that they are informative and neutral.",
            "Rewrite the headline of this article so that a reader learns what it is about. Stay neutral and "
            "factual; use the article's details.\nHeadline: $title\nAbstract: $abstract\nCategory: $category / "
            "$subcategory\nAnswer with the new headline only.",
        ),
        "books": (
            "You describe books in one neutral sentence.",
            'Describe the book titled "$title" in one sentence for a reader deciding whether to read it. '
            "Answer with the sentence only.",
        ),
    },
    "profile": {
        "news": (
            "You infer what news a reader is interested in.",
            "A reader opened these news articles, oldest first:\n$history\nWhich topics interest this reader? "
            "Choose at most 5, most important first, from: " + ", ".join(NEWS_TOPICS) + ". If the articles "
            'point to US states, name at most 3. Answer with JSON only: {"topics": [...], "regions": [...]}',
        ),
        "books": (
            "You infer what books a reader is interested in.",
            "A reader read these books, oldest first:\n$history\nName at most 5 interests of this reader, one or "
            'two words each, most important first. Answer with JSON only: {"interests": [...]}',
        ),
    },
    "generate": {
        "news": (
            "You suggest news articles a reader would like.",
            "${profile}A reader opened these news articles, oldest first:\n$history\nWrite one new news article "
            "this reader would enjoy that is not like any of these. Answer with JSON only: "
            '{"title": "...", "abstract": "...", "category": "..."}',
        ),
        "books": (
            "You suggest books a reader would like.",
            "${profile}A reader read these books, oldest first:\n$history\nSuggest one book this reader would "
            "enjoy that is not one of these and differs from them. Answer with JSON only: "
            '{"title": "...", "description": "..."}',
        ),
    },
}
GENERATED_FIELDS = {"news": ("title", "abstract", "category"), "books": ("title", "description")}


def _prompt(scheme: str, options: SchemeOptions) -> tuple[str, string.Template]:
    system, template = PROMPTS[scheme][options.flavour]
    return options.system or system, string.Template(options.template or template)


def _fill(template: string.Template, values: dict[str, str], key: str) -> str:
    try:
        return template.substitute(values)
    except KeyError as error:
        raise RecipeError(
            f"the prompt template names ${error.args[0]}, which is not available",
            where=key,
            hint=f"Available: {', '.join('$' + v for v in values)}.",
        ) from None
    except ValueError as error:
        raise RecipeError(f"the prompt template is not valid: {error}", where=key, hint="Write $$ for $.") from None


def _clean(text: str) -> str:
    return " ".join(text.split())


def _json_object(answer: str) -> Any:
    """The JSON value in an answer, tolerating code fences and text around one object or list."""
    text = answer.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise MalformedAnswer("no JSON in the answer")
    start = min(starts)
    end = text.rfind("}" if text[start] == "{" else "]")
    try:
        return json.loads(text[start : end + 1] if end > start else text[start:])
    except json.JSONDecodeError as error:
        raise MalformedAnswer(f"not valid JSON ({error.msg})") from None


def _strings(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    seen: list[str] = []
    for item in value:
        if isinstance(item, str) and _clean(item) and _clean(item).lower() not in (s.lower() for s in seen):
            seen.append(_clean(item))
    return seen[:limit]


def _item_fields(corpus: Corpus, row: int) -> dict[str, str]:
    items = corpus.items
    values = {k: v[row] for k, v in items.categories.items()}
    values.update({k: v[row] for k, v in items.text.items()})
    return values


def user_histories(corpus: Corpus) -> dict[str, np.ndarray]:
    """Each user's longest history in the training split (what the model is trained on), else in the first
    split that has the user: later splits' histories hold earlier splits' answers."""
    histories: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if split not in corpus.splits:
            continue
        seen_here: dict[str, np.ndarray] = {}
        for part in corpus.splits[split].parts():
            for row, user in enumerate(part.user_ids):
                if user in histories:
                    continue
                history = part.history[row].copy()  # not a view that would keep the part's arrays alive
                if user not in seen_here or len(history) > len(seen_here[user]):
                    seen_here[user] = history
        histories.update(seen_here)
    return histories


def _numbered_titles(corpus: Corpus, history: np.ndarray) -> str:
    titles = corpus.items.text["title"]
    return "\n".join(f"{i}. {_clean(titles[row])}" for i, row in enumerate(history, 1))


class _Scheme:
    """What the three schemes share: their prompt (the flavour's, or the recipe's) and how it becomes messages."""

    name = ""

    def __init__(self, options: SchemeOptions, context: Any = None) -> None:
        self.options = options
        self.system, self.template = _prompt(self.name, options)
        self.key = f"genre.schemes.{getattr(context, 'key', self.name)}.template"

    def _messages(self, values: dict[str, str]) -> list[dict[str, str]]:
        prompt = _fill(self.template, values, self.key)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": prompt}]


class Summarize(_Scheme):
    """Content summarizer: one enriched text per item (news: a neutral headline; books: one sentence)."""

    name = "summarize"

    def __init__(self, options: SchemeOptions, context: Any = None) -> None:
        super().__init__(options, context)
        self.max_words = 40 if options.flavour == "news" else 80

    def requests(self, corpus: Corpus, outputs: Callable[[str], dict[str, Any]]) -> list[Request]:
        requests = []
        for row, item in enumerate(corpus.items.ids):
            if row == 0:
                continue
            fields = _item_fields(corpus, row)
            requests.append(Request(item, self._messages(fields), {"title": fields.get("title", "")}))
        return requests

    def parse(self, answer: str, context: dict[str, Any] | None = None) -> str:
        text = _clean(answer)
        text = re.sub(r"^(\[description\]|description:|headline:|title:|summary:)\s*", "", text, flags=re.I)
        text = text.strip().strip('"').strip()
        if not text:
            raise MalformedAnswer("empty answer")
        if REFUSAL.match(text):
            raise MalformedAnswer("the model declined")
        title = _clean((context or {}).get("title", ""))
        if title and text.lower().rstrip(".") == title.lower().rstrip("."):
            raise MalformedAnswer("the answer only repeats the title")
        if len(text.split()) > self.max_words:
            raise MalformedAnswer(f"longer than {self.max_words} words")
        return text


class Profile(_Scheme):
    """User profiler: news topics from the fixed 19 (plus US-state regions), or up to 5 book interests."""

    name = "profile"
    options: UserSchemeOptions

    def requests(self, corpus: Corpus, outputs: Callable[[str], dict[str, Any]]) -> list[Request]:
        requests = []
        for user, history in sorted(user_histories(corpus).items()):
            if len(history):
                shown = _numbered_titles(corpus, history[-self.options.max_history :])
                requests.append(Request(user, self._messages({"history": shown})))
        return requests

    def parse(self, answer: str, context: dict[str, Any] | None = None) -> dict[str, list[str]]:
        value = _json_object(answer)
        if self.options.flavour == "books":
            interests = _strings(value.get("interests", value.get("interest")) if isinstance(value, dict) else value, 5)
            if not interests:
                raise MalformedAnswer("no interests in the answer")
            return {"interests": interests}
        if not isinstance(value, dict):
            raise MalformedAnswer('expected {"topics": [...], "regions": [...]}')
        known = {t.lower(): t for t in NEWS_TOPICS}
        topics = [known[t.lower()] for t in _strings(value.get("topics"), 19) if t.lower() in known][:5]
        if not topics:
            raise MalformedAnswer("none of the 19 topics in the answer")
        states = {s.lower(): s for s in US_STATES}
        regions = [states[r.lower()] for r in _strings(value.get("regions"), 50) if r.lower() in states][:3]
        return {"topics": topics, "regions": regions}


class Generate(_Scheme):
    """Personalized content generator: a new item for each cold user (history of at most `max_history`)."""

    name = "generate"
    options: GenerateOptions

    def __init__(self, options: GenerateOptions, context: Any = None) -> None:
        super().__init__(options, context)
        self.fields = GENERATED_FIELDS[options.flavour]

    def requests(self, corpus: Corpus, outputs: Callable[[str], dict[str, Any]]) -> list[Request]:
        profiles = outputs(self.options.chain) if self.options.chain else {}
        requests = []
        for user, history in sorted(user_histories(corpus).items()):
            if not 0 < len(history) <= self.options.max_history:
                continue
            profile = profile_text(profiles.get(user))
            values = {
                "history": _numbered_titles(corpus, history),
                "profile": f"The reader's interests: {profile}.\n" if profile else "",
            }
            messages = self._messages(values)
            requests.extend(Request(f"{user}#{k}", messages) for k in range(self.options.samples))
        return requests

    def parse(self, answer: str, context: dict[str, Any] | None = None) -> dict[str, str]:
        value = _json_object(answer)
        if not isinstance(value, dict):
            raise MalformedAnswer(f"expected a JSON object with {', '.join(self.fields)}")
        missing = [f for f in self.fields if not (isinstance(value.get(f), str) and _clean(value[f]))]
        if missing:
            raise MalformedAnswer(f"missing or empty: {', '.join(missing)}")
        return {f: _clean(value[f]) for f in self.fields}
