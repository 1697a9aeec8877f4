"""`once genre SCHEME RECIPE`: plan the requests of one scheme, estimate them, or send them and record answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from once.errors import RecipeError
from once.files import exclusive
from once.genre.backends import make_backend
from once.genre.runner import Report, Request, estimate_tokens, run_requests
from once.genre.store import RecordStore
from once.protocols import Augmenter, SchemeContext
from once.recipe import GenreSection, ResolvedRecipe, scheme_options
from once.registry import Registry


@dataclass
class Plan:
    key: str
    scheme: Augmenter
    store: RecordStore
    total: int  # requests the scheme makes for this data
    pending: list[Request]  # the ones to send now: not answered yet (or failed, with retry_failed), up to --limit
    held_back: int = 0  # unanswered requests that --limit leaves for a later run

    @property
    def answered(self) -> int:
        return self.total - len(self.pending) - self.held_back

    @property
    def prompt_tokens(self) -> int:
        return sum(estimate_tokens(r.messages) for r in self.pending)


def answers_path(section: GenreSection, key: str) -> Path:
    return section.out / f"{key}.jsonl"


def answers_lock(section: GenreSection, key: str) -> contextlib.AbstractContextManager:
    """The lock a process holds while it reads and appends the answer file of scheme `key`."""
    path = answers_path(section, key)
    return exclusive(path.with_name(f".{path.name}.lock"), f"the answer file {path.name}")


def build_scheme(section: GenreSection, key: str, registry: Registry) -> Augmenter:
    """The augmenter that `genre.schemes.KEY` names (the key itself when the recipe does not list it)."""
    part, options = scheme_options(section, key, registry)
    return part.load()(options, SchemeContext(key))


def plan(
    resolved: ResolvedRecipe, key: str, registry: Registry, *, retry_failed: bool = False, limit: int | None = None
) -> Plan:
    section = resolved.recipe.genre
    scheme = build_scheme(section, key, registry)
    corpus = resolved.build("dataset").read()

    def outputs(other: str) -> dict[str, Any]:
        path = answers_path(section, other)
        if not path.exists():
            raise RecipeError(
                f"the chained scheme '{other}' has no answers yet",
                where=str(path),
                hint=f"Run `once genre {other}` first.",
            )
        return RecordStore(path).values()

    requests = scheme.requests(corpus, outputs)
    store = RecordStore(answers_path(section, key))
    done = store.done(retry_failed)
    pending = [r for r in requests if r.id not in done]
    sent = pending[:limit] if limit else pending
    return Plan(key, scheme, store, len(requests), sent, len(pending) - len(sent))


def estimate(plan: Plan, section: GenreSection) -> dict[str, Any]:
    """What a run would send: requests, prompt tokens (about 4 characters each) and, given prices, the cost."""
    backend = section.backend
    prompt, answers = plan.prompt_tokens, len(plan.pending) * backend.max_tokens
    figures: dict[str, Any] = {"requests": len(plan.pending), "prompt_tokens": prompt, "max_answer_tokens": answers}
    if backend.price_prompt is not None and backend.price_completion is not None:
        figures["max_cost"] = (prompt * backend.price_prompt + answers * backend.price_completion) / 1e6
    return figures


def execute(plan: Plan, section: GenreSection, on_done: Callable[[Report], None] | None = None) -> Report:
    """Send the pending requests; every outcome is on disk when this returns (or is interrupted)."""
    backend = make_backend(section.backend)
    key = getattr(backend, "key", None)

    def redact(text: str) -> str:
        return text.replace(key, "***") if key else text

    try:
        return asyncio.run(
            run_requests(plan.pending, plan.scheme, backend, plan.store, section.backend, on_done, redact)
        )
    finally:
        plan.store.compact()
