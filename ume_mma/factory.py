"""The encoder factory: imports every module of ``ume_mma.encoders`` (each adapter registers itself) and builds.

``create_encoder(name_or_spec)`` = look the spec up -> look its source's adapter up -> build (never
downloads) -> optionally :meth:`Encoder.load_pretrained`. The adapter modules below may be imported in
any order: none of them looks anything up in the registry at import time.
"""

from __future__ import annotations

import importlib
import pkgutil

import ume_mma.encoders
from ume_mma.encoders.base import Encoder
from ume_mma.registry import EncoderSpec, get_adapter, get_spec

#: Every module of ``ume_mma.encoders`` (adapters register their specs and builder when imported; helpers
#: such as ``base`` register nothing). Found, not listed: a new adapter module needs no edit here.
BUILTIN_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(ume_mma.encoders.__path__)))
for _name in BUILTIN_MODULES:
    importlib.import_module(f"ume_mma.encoders.{_name}")


def create_encoder(spec: str | EncoderSpec, pretrained: bool = False) -> Encoder:
    """Build an encoder (with its preprocessing) from a registered name or a spec. Never downloads unless
    ``pretrained`` is True, which calls :meth:`Encoder.load_pretrained` after building."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    encoder = get_adapter(spec.source)(spec)
    if pretrained and spec.pretrained:
        encoder.load_pretrained()
    return encoder
