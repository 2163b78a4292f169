"""One registry: an encoder name -> a frozen :class:`EncoderSpec`, a source -> the adapter that builds it.

Like timm's ``_registry.py`` this module imports no implementation: every adapter module
(``ume_mma/encoders/*.py``) registers its specs and its builder when imported, in any order, and
:mod:`ume_mma.factory` imports them all and builds encoders. Lookups (:func:`get_spec`,
:func:`list_encoders`, :func:`create_encoder`) import :mod:`ume_mma.factory` on first use, so they
always see every built-in. Names follow ``family.tag`` (``scratch.cnn``, ``open_clip.vit-b-32``).
A spec can also be given directly (checkpoints store the full spec, so a custom encoder reloads
without re-registering its spec; its adapter module must be imported).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ume_mma.errors import UnknownEncoderError

#: The modality keys every model, dataset and predictor uses (the one definition).
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
    """Decorator: ``@register_adapter("scratch")`` marks the builder (spec -> ``Encoder``) of one source."""

    def wrap(builder: Callable[[EncoderSpec], Any]) -> Callable[[EncoderSpec], Any]:
        if _ADAPTERS.get(source, builder) is not builder:
            raise ValueError(f"adapter {source!r} is already registered")
        _ADAPTERS[source] = builder
        return builder

    return wrap


def _load_builtins() -> None:
    # The factory imports every built-in adapter module; imported lazily, so this module imports none.
    import ume_mma.factory  # noqa: F401


def get_adapter(source: str) -> Callable[[EncoderSpec], Any]:
    """The builder registered for ``source``; unknown sources raise listing the known ones."""
    _load_builtins()
    try:
        return _ADAPTERS[source]
    except KeyError:
        raise UnknownEncoderError(f"unknown encoder source {source!r}; known: {sorted(_ADAPTERS)}") from None


def list_encoders(modality: str | None = None) -> list[str]:
    """Registered names, sorted; optionally only those of one modality."""
    _load_builtins()
    return sorted(n for n, s in ENCODERS.items() if modality is None or s.modality == modality)


def get_spec(name: str) -> EncoderSpec:
    """The spec registered under ``name``; unknown names raise listing the known ones."""
    _load_builtins()
    try:
        return ENCODERS[name]
    except KeyError:
        raise UnknownEncoderError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}") from None


def create_encoder(spec: str | EncoderSpec, pretrained: bool = False) -> Any:
    """Build an encoder from a name or spec: :func:`ume_mma.factory.create_encoder` (kept here as the
    historical public name)."""
    from ume_mma.factory import create_encoder as build

    return build(spec, pretrained=pretrained)
