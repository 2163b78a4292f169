"""Per-client limits of a public app: who the client is, and how many calls it may have in flight at once.

The client's address is the socket's peer. A proxy's ``X-Forwarded-For`` is believed only when the peer is a
proxy the operator trusts (``--trusted-proxies ADDR[,ADDR]``, or uvicorn's own ``FORWARDED_ALLOW_IPS``), and on
a Hugging Face Space, whose proxy is the only way in: then the client is the last hop that is not a trusted
proxy, counted from the right (each proxy appends the address it saw; what a client writes itself stays on
the left). A client cannot pick its own address by writing the header.

Gradio's ``concurrency_limit`` bounds an event for everybody together; on a public Space one client (a
script firing calls in a loop) could take every slot. :class:`ClientLimiter` counts the calls in flight per
client address and refuses one over the limit at once, in words, instead of queueing it.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Proxies:
    """The proxies whose ``X-Forwarded-For`` is believed: ``networks`` (addresses or CIDR ranges) and, with
    ``any_peer`` (a Space), whatever peer connects (the Space's proxy)."""

    networks: tuple[Network, ...] = ()
    any_peer: bool = False
    names: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, value: str | Iterable[str] | None, any_peer: bool = False) -> Proxies:
        """``"10.0.0.1,10.1.0.0/16"`` (or a list); a bad address raises ValueError naming it."""
        items = [x.strip() for x in (value.split(",") if isinstance(value, str) else value or [])]
        items = [x for x in items if x]
        nets = []
        for item in items:
            if item == "*":
                any_peer = True
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"trusted proxy {item!r} is not an IP address or network (e.g. 10.0.0.1)") from None
        return cls(tuple(nets), any_peer, tuple(items))

    @classmethod
    def from_settings(cls, trusted: str | None = None) -> Proxies:
        """``--trusted-proxies``, else uvicorn's ``FORWARDED_ALLOW_IPS``; on a Space its proxy too."""
        value = trusted if trusted is not None else os.environ.get("FORWARDED_ALLOW_IPS")
        return cls.parse(value, any_peer=bool(os.environ.get("SPACE_ID")))

    def trusts(self, host: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((host or "").strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, peer: str | None, forwarded: str | None) -> str:
        """The client's address from the socket's ``peer`` and the ``X-Forwarded-For`` header's value."""
        peer = peer or "local"
        if not forwarded or not (self.any_peer or self.trusts(peer)):
            return peer
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer


def client_key(request: gr.Request | None, proxies: Proxies | None = None) -> str:
    """The client's address of a Gradio request (see :class:`Proxies`); ``"local"`` without a request."""
    if request is None:
        return "local"
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", None) or {}
    return (proxies or Proxies()).client(getattr(client, "host", None), headers.get("x-forwarded-for"))


def request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> gr.Request | None:
    """The ``gr.Request`` among an event function's arguments (Gradio fills it in, by position or by name)."""
    found = kwargs.get("request")
    return found if isinstance(found, gr.Request) else next((a for a in args if isinstance(a, gr.Request)), None)


class ClientLimiter:
    """At most ``per_client`` calls in flight per client; ``per_client`` None = no limit."""

    def __init__(self, per_client: int | None, proxies: Proxies | None = None) -> None:
        self.per_client = per_client
        self.proxies = proxies or Proxies()
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
            with self.slot(client_key(request_of(args, kwargs), self.proxies)):
                return fn(*args, **kwargs)

        return limited
