"""HTTP guards in front of the Gradio app (ASGI middleware): what no event function can see.

- :class:`UploadBudget`: each client address may upload at most so many bytes per minute (public mode);
  over it, ``POST .../upload`` is refused with HTTP 429 and a sentence saying when to try again.
- :class:`LoginGuard`: login back-off for ``--auth``. After :data:`FREE_FAILURES` wrong passwords for a user,
  or from an address, each further failure locks that user (or address) out for 1, 2, 4 ... seconds, at
  most :data:`MAX_LOCK_S`; during the window every login of it is refused with HTTP 429 (the password is
  not even checked), after it the right password works, and a success clears the count.

Both key clients by :class:`ui.limits.Proxies` (the socket's peer unless it is a trusted proxy).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from ui.limits import Proxies

FREE_FAILURES = 5  # wrong passwords (per user, per address) before the back-off starts
MAX_LOCK_S = 60.0  # the longest lockout window
MAX_LOGIN_BODY = 64 * 1024  # a login form is small: a bigger body is refused


def scope_client(scope: dict[str, Any], proxies: Proxies) -> str:
    """The client's address of an ASGI request."""
    peer = (scope.get("client") or (None,))[0]
    forwarded = ", ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for")
    return proxies.client(peer, forwarded)


def posted_to(scope: dict[str, Any], name: str) -> bool:
    """Whether ``scope`` is an HTTP POST to a path ending in ``/<name>`` (Gradio serves some under two prefixes)."""
    return scope["type"] == "http" and scope.get("method") == "POST" and scope["path"].rstrip("/").endswith(f"/{name}")


def header(scope: dict[str, Any], name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


async def refuse(send: Callable, status: int, message: str, retry_s: float | None = None) -> None:
    """A JSON ``{"detail": message}`` response (what Gradio's own refusals look like)."""
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_s))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class UploadBudget:
    """At most ``max_bytes`` of uploads per client address in any ``window_s`` seconds."""

    def __init__(self, app: Any, max_bytes: int, proxies: Proxies, window_s: float = 60.0) -> None:
        self.app, self.max_bytes, self.proxies, self.window_s = app, max_bytes, proxies, window_s
        self._sent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def charge(self, key: str, size: int, now: float) -> float | None:
        """Record ``size`` bytes for ``key``; or, when they do not fit, the seconds until they would."""
        with self._lock:
            sent = self._sent[key]
            while sent and now - sent[0][0] >= self.window_s:
                sent.popleft()
            used = sum(n for _, n in sent)
            if used + size > self.max_bytes:
                if not sent:
                    return self.window_s
                return self.window_s - (now - sent[0][0])
            sent.append((now, size))
            return None

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if not posted_to(scope, "upload"):
            return await self.app(scope, receive, send)
        mb = self.max_bytes / 2**20
        length = header(scope, b"content-length")
        if length is None or not length.isdigit():
            return await refuse(send, 411, "Uploads need a Content-Length header on this public app.")
        wait = self.charge(scope_client(scope, self.proxies), int(length), time.monotonic())
        if wait is not None:
            message = (
                f"Upload budget used up: this public app takes at most {mb:g} MB of uploads per minute from your "
                f"address; try again in {max(1, math.ceil(wait))} s."
            )
            return await refuse(send, 429, message, wait)
        return await self.app(scope, receive, send)


class Backoff:
    """Failure counts and lockout windows per key (a user name or an address)."""

    def __init__(self, free: int = FREE_FAILURES, max_s: float = MAX_LOCK_S) -> None:
        self.free, self.max_s = free, max_s
        self._failures: dict[str, int] = defaultdict(int)
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked_for(self, key: str, now: float) -> float:
        """Seconds left of ``key``'s lockout (0: not locked)."""
        with self._lock:
            return max(0.0, self._until.get(key, 0.0) - now)

    def failed(self, key: str, now: float) -> None:
        with self._lock:
            self._failures[key] += 1
            over = self._failures[key] - self.free
            if over > 0:
                self._until[key] = now + min(self.max_s, 2.0 ** (over - 1))

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
            self._until.pop(key, None)


class LoginGuard:
    """Login back-off on ``POST .../login`` (see the module's docstring)."""

    def __init__(self, app: Any, proxies: Proxies, backoff: Backoff | None = None) -> None:
        self.app, self.proxies = app, proxies
        self.backoff = backoff or Backoff()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if not posted_to(scope, "login"):
            return await self.app(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_LOGIN_BODY:
                return await refuse(send, 413, "A login form is at most 64 KB.")
            if not message.get("more_body"):
                break
        user = (parse_qs(body.decode("latin-1")).get("username") or [""])[0].strip()
        keys = [f"user:{user}", f"addr:{scope_client(scope, self.proxies)}"]
        now = time.monotonic()
        wait = max(self.backoff.locked_for(k, now) for k in keys)
        if wait > 0:
            text = f"Too many failed logins for this user or from this address: try again in {math.ceil(wait)} s."
            return await refuse(send, 429, text, wait)
        status: list[int] = []

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, watch)
        for key in keys:
            if status and status[0] < 300:
                self.backoff.succeeded(key)
            elif status and status[0] in (400, 401, 403):
                self.backoff.failed(key, time.monotonic())
