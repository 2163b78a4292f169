"""One registry: an encoder name -> a frozen :class:`EncoderSpec`; one factory builds the encoder.

Names follow ``family.tag`` (``scratch.cnn``, ``open_clip.vit-b-32``). A spec can also be given
directly (checkpoints store the full spec, so a custom encoder reloads without re-registering).
Building an encoder never downloads; :meth:`Encoder.load_pretrained` is the explicit step that does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ume_mma.errors import UnknownEncoderError

MODALITIES: tuple[str, ...] = ("audio", "image", "text", "video")


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to build an encoder and its preprocessing.

    Attributes:
        name: registry name, ``family.tag``.
        modality: one of :data:`MODALITIES`.
        source: adapter that builds it (``scratch``, ``open_clip``, ``transformers``, ``packaged``, ``video``).
        embed_dim: size D of the ``Tensor[B, D]`` the encoder returns.
        options: adapter-specific settings (architecture sizes, model ids, pooling, ...).
        pretrained: where weights come from (``hf-hub:org/name``, ``package:name``) or None (random init).
        frozen: whether training keeps the encoder fixed (its features can then be cached).
        sample_rate: audio rate the preprocessing expects (audio encoders).
        image_size: square input size in pixels (image encoders).
        description: one line for listings and model cards.
    """

    name: str
    modality: str
    source: str
    embed_dim: int
    options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    frozen: bool = False
    sample_rate: int | None = None
    image_size: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"encoder {self.name!r}: modality {self.modality!r} not in {MODALITIES}")
        # A frozen dataclass holding a dict is not hashable; store a canonical copy instead.
        object.__setattr__(self, "options", json.loads(json.dumps(self.options, sort_keys=True)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSpec:
        return strict_from_dict(cls, data, "encoder spec")

    def replace(self, **changes: Any) -> EncoderSpec:
        return dataclasses.replace(self, **changes)


def strict_from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ``ValueError`` naming the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} fields {unknown}; known: {sorted(known)}")
    return cls(**data)


ENCODERS: dict[str, EncoderSpec] = {}
_ADAPTERS: dict[str, Callable[[EncoderSpec], Any]] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add ``spec`` to the registry (names are unique)."""
    if spec.name in ENCODERS and ENCODERS[spec.name] != spec:
        raise ValueError(f"encoder {spec.name!r} is already registered with another spec")
    ENCODERS[spec.name] = spec
    return spec


def register_adapter(source: str) -> Callable[[Callable[[EncoderSpec], Any]], Callable[[EncoderSpec], Any]]:
    """Decorator: ``@register_adapter("scratch")`` marks the builder of one source."""

    def wrap(builder: Callable[[EncoderSpec], Any]) -> Callable[[EncoderSpec], Any]:
        _ADAPTERS[source] = builder
        return builder

    return wrap


def _ensure_loaded() -> None:
    # Importing the adapters package registers every built-in spec and adapter.
    import ume_mma.encoders  # noqa: F401


def list_encoders(modality: str | None = None) -> list[str]:
    """Registered names, sorted; optionally only those of one modality."""
    _ensure_loaded()
    return sorted(n for n, s in ENCODERS.items() if modality is None or s.modality == modality)


def get_spec(name: str) -> EncoderSpec:
    """The spec registered under ``name``; unknown names raise listing the known ones."""
    _ensure_loaded()
    try:
        return ENCODERS[name]
    except KeyError:
        raise UnknownEncoderError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}") from None


def create_encoder(spec: str | EncoderSpec, pretrained: bool = False):
    """Build an encoder (with its preprocessing) from a name or spec. Never downloads unless
    ``pretrained`` is True, which calls :meth:`Encoder.load_pretrained` after building."""
    _ensure_loaded()
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if spec.source not in _ADAPTERS:
        raise UnknownEncoderError(f"encoder {spec.name!r}: unknown source {spec.source!r}; known: {sorted(_ADAPTERS)}")
    encoder = _ADAPTERS[spec.source](spec)
    if pretrained and spec.pretrained:
        encoder.load_pretrained()
    return encoder
