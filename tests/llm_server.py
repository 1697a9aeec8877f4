"""A real HTTP server on 127.0.0.1 that speaks the chat-completions API, replays answers the paper's GPT-3.5 really
gave (tests/data/goodreads) and injects the faults a real endpoint has: 429 with Retry-After, 500s, answers
slower than the client's timeout, dropped connections, bodies that are not JSON, and truncated answers."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).parent / "data" / "goodreads"
FAULTS = ("429", "500", "slow", "drop", "badbody", "truncated", "prose")


def logged_answers() -> Callable[[str], str]:
    """prompt -> the logged GPT-3.5 answer for the book or user it is about."""
    titles = {}
    for line in (DATA / "book.csv").read_text(encoding="utf8").splitlines()[1:]:
        bid, _, title = line.partition("\t")
        titles[" ".join(title.split())] = bid
    summaries = {}
    for line in (DATA / "book_summarizer.log").read_text(encoding="utf8").splitlines():
        bid, _, answer = line.partition("\t")
        summaries[bid] = answer
    users = [line.split("\t")[1].split() for line in (DATA / "users.tsv").read_text().splitlines()[1:]]
    profiles = {r["uid"]: r["interest"] for r in map(json.loads, (DATA / "user_profiler.log").read_text().splitlines())}
    books = [json.loads(line)["book"] for line in (DATA / "generator_v1.log").read_text().splitlines()]
    by_last_book = {history[-1]: row for row, history in enumerate(users)}

    def answer(prompt: str) -> str:
        if match := re.search(r'titled "(.*)" in one sentence', prompt):
            return summaries.get(titles.get(match.group(1), ""), "[description] A book.")
        shown = re.findall(r"^\d+\. (.*)$", prompt, flags=re.M)
        row = by_last_book.get(titles.get(shown[-1], ""), 0) if shown else 0
        if "interests of this reader" in prompt:
            return json.dumps({"interests": profiles.get(row, ["books"])})
        return books[row % len(books)]

    return answer


class LLMServer:
    """`faults` is consumed one per request (None = answer normally); `requests` counts every request received."""

    def __init__(self, delay: float = 0.0, timeout_delay: float = 3.0) -> None:
        self.faults: deque[str | None] = deque()
        self.requests = 0
        self.seen_keys: set[str] = set()
        self.delay, self.timeout_delay = delay, timeout_delay
        self.answer = logged_answers()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    server.seen_keys.add(self.headers.get("Authorization", ""))
                    fault = server.faults.popleft() if server.faults else None
                if server.delay:
                    time.sleep(server.delay)
                if fault == "drop":
                    self.connection.shutdown(2)
                    return
                if fault == "slow":
                    time.sleep(server.timeout_delay)
                if fault in ("429", "500"):
                    self._reply(
                        int(fault), {"error": {"message": "try later", "type": "server"}}, {"Retry-After": "0.05"}
                    )
                    return
                if fault == "badbody":
                    self._raw(200, b"{this is not json")
                    return
                prompt = body["messages"][-1]["content"]
                text = server.answer(prompt)
                if fault == "truncated":
                    text = text[: len(text) // 2]
                if fault == "prose":
                    text = "Sure! Here is what I think about this reader."
                self._reply(200, completion(body["model"], prompt, text))

            def _reply(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                self._raw(status, json.dumps(payload).encode(), headers)

            def _raw(self, status: int, raw: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> LLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(model: str, prompt: str, text: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": len(text) // 4,
            "total_tokens": len(prompt) // 4 + len(text) // 4,
        },
    }
