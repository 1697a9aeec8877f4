"""Asking an LLM for every pending id: bounded concurrency, rate limits, retries, one record per answer."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from once.genre.backends import Backend, BackendSection, Messages, Refused, Transient
from once.genre.store import FAILED, MALFORMED, OK, RecordStore
from once.protocols import Augmenter

CHARS_PER_TOKEN = 4  # a rough count for estimates before any request is sent


class MalformedAnswer(ValueError):
    """The answer does not have the form the scheme asked for (the reason is recorded)."""


@dataclass(frozen=True)
class Request:
    id: str  # the item or user id (with a sample suffix when a scheme asks several times)
    messages: Messages
    context: dict[str, Any] = field(default_factory=dict)  # what `parse` may check the answer against


@dataclass
class Report:
    pending: int = 0
    requests: int = 0  # HTTP requests made, retries included
    ok: int = 0
    failed: int = 0
    malformed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def estimate_tokens(messages: Messages) -> int:
    return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)


class RateLimiter:
    """Requests per minute and tokens per minute, as token buckets refilled continuously. `clock` and `sleep`
    are the time it reads and waits in (tests pass a fake clock that advances only when slept on)."""

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = [requests_per_minute, tokens_per_minute]
        self.levels = [float(limit or 0) for limit in self.limits]
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        async with self.lock:
            costs = [1, tokens]
            while True:
                now = self.clock()
                elapsed, self.updated = now - self.updated, now
                waits = []
                for i, (limit, cost) in enumerate(zip(self.limits, costs, strict=True)):
                    if limit is None:
                        continue
                    self.levels[i] = min(limit, self.levels[i] + elapsed * limit / 60)
                    cost = min(cost, limit)  # one request bigger than a minute's budget waits for a full bucket
                    if self.levels[i] < cost:
                        waits.append((cost - self.levels[i]) * 60 / limit)
                if not waits:
                    for i, (limit, cost) in enumerate(zip(self.limits, costs, strict=True)):
                        if limit is not None:
                            self.levels[i] -= min(cost, limit)
                    return
                await self.sleep(max(waits))


async def run_requests(
    requests: list[Request],
    scheme: Augmenter,
    backend: Backend,
    store: RecordStore,
    section: BackendSection,
    on_done: Callable[[Report], None] | None = None,
    redact: Callable[[str], str] = lambda text: text,
) -> Report:
    """Send every request, recording each outcome in `store` as it completes."""
    report = Report(pending=len(requests))
    limiter = RateLimiter(section.requests_per_minute, section.tokens_per_minute)
    in_flight = asyncio.Semaphore(section.max_in_flight)
    started = time.perf_counter()

    async def one(request: Request) -> None:
        async with in_flight:
            record = await _ask(request, scheme, backend, limiter, section, report, redact)
        store.append(record)
        report.ok += record["status"] == OK
        report.failed += record["status"] == FAILED
        report.malformed += record["status"] == MALFORMED
        if on_done:
            on_done(report)

    try:
        await asyncio.gather(*(one(r) for r in requests))
    finally:
        report.seconds = time.perf_counter() - started
        await backend.close()
    return report


async def _ask(
    request: Request,
    scheme: Augmenter,
    backend: Backend,
    limiter: RateLimiter,
    section: BackendSection,
    report: Report,
    redact: Callable[[str], str],
) -> dict[str, Any]:
    record: dict[str, Any] = {"id": request.id, "status": FAILED, "answer": None, "value": None, "model": None}
    estimate = estimate_tokens(request.messages) + section.max_tokens
    began = time.perf_counter()
    guard = section.timeout * 1.5 if backend.name == "openai" else None  # a local generation cannot be cancelled
    for attempt in range(section.max_retries + 1):
        await limiter.acquire(estimate)
        report.requests += 1
        try:
            completion = await asyncio.wait_for(backend.complete(request.messages), guard)
        except (Transient, TimeoutError) as error:
            reason = redact(str(error) or "no answer in time")
            report.errors[reason.split(" (")[0]] = report.errors.get(reason.split(" (")[0], 0) + 1
            record["error"] = reason
            if attempt == section.max_retries:
                break
            report.retries += 1
            delay = min(section.max_backoff, section.backoff * 2**attempt) * random.uniform(0.5, 1.0)
            server = getattr(error, "retry_after", None)
            await asyncio.sleep(server if server is not None else delay)
            continue
        except Refused as error:
            record["error"] = redact(str(error))
            break
        report.prompt_tokens += completion.prompt_tokens
        report.completion_tokens += completion.completion_tokens
        record.update(
            answer=completion.text,
            model=completion.model,
            usage={"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
        )
        record.pop("error", None)
        try:
            record.update(status=OK, value=scheme.parse(completion.text, request.context))
        except MalformedAnswer as error:
            record.update(status=MALFORMED, error=str(error))
        break
    record["attempts"] = attempt + 1
    record["seconds"] = round(time.perf_counter() - began, 3)
    return record
