"""What every request passes before the app: the bearer token (when the server has one) and the body limit."""

from __future__ import annotations

import hmac
import json


class Guard:
    """ASGI middleware. A wrong or missing token gets 401 with no detail (compared in constant time); a body over
    `max_body` bytes gets 413, whether its Content-Length says so or it streams past the limit."""

    def __init__(self, app, token: str | None, max_body: int) -> None:
        self.app, self.max_body = app, max_body
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.expected is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            return await _respond(send, 401, None, [(b"www-authenticate", b"Bearer")])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            return await _respond(send, 413, f"the request body is over {self.max_body} bytes")
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return await _respond(send, 413, f"the request body is over {self.max_body} bytes")
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _respond(send, status: int, detail: str | None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = b"" if detail is None else json.dumps({"detail": detail}).encode()
    head = [(b"content-length", str(len(body)).encode()), *(headers or [])]
    if detail is not None:
        head.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
