"""Per-client limits of a public app: how many calls one client may have in flight at once.

Gradio's ``concurrency_limit`` bounds an event for everybody together; on a public Space one client (a
script firing calls in a loop) could take every slot. :class:`ClientLimiter` counts the calls in flight per
client address (the first ``X-Forwarded-For`` address behind the Spaces proxy, else the socket's peer) and
refuses one over the limit at once, in words, instead of queueing it.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr


def client_key(request: gr.Request | None) -> str:
    """The client's address: the first X-Forwarded-For hop (set by the Spaces proxy), else the peer address."""
    if request is None:
        return "local"
    forwarded = (request.headers or {}).get("x-forwarded-for", "")
    if forwarded.strip():
        return forwarded.split(",")[0].strip()
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "local")


class ClientLimiter:
    """At most ``per_client`` calls in flight per client; ``per_client`` None = no limit."""

    def __init__(self, per_client: int | None) -> None:
        self.per_client = per_client
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, key: str) -> Iterator[None]:
        """Hold one of ``key``'s slots for the block, or raise gr.Error when they are all taken."""
        if self.per_client is None:
            yield
            return
        with self._lock:
            if self._in_flight[key] >= self.per_client:
                raise gr.Error(
                    f"Too many requests at once from your address (at most {self.per_client} at a time on this "
                    "public app): wait for the previous ones to finish.",
                    print_exception=False,
                )
            self._in_flight[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1
                if not self._in_flight[key]:
                    del self._in_flight[key]

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (which takes a ``request: gr.Request`` parameter, filled in by Gradio, positionally or by name)
        run inside a slot of the caller's address."""

        @functools.wraps(fn)
        def limited(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or next((a for a in args if isinstance(a, gr.Request)), None)
            with self.slot(client_key(request)):
                return fn(*args, **kwargs)

        return limited
