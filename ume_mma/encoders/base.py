"""The one encoder interface: raw decoded inputs -> batch -> ``Tensor[B, D]``."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Self

import torch
from torch import nn

from ume_mma.registry import EncoderSpec

Batch = torch.Tensor | dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class EncoderOptions:
    """Base of each adapter's typed options: the one place their defaults live. Parsed from
    ``spec.options`` by :meth:`from_spec` (lists become tuples; unknown keys raise ``ValueError``)."""

    @classmethod
    def from_spec(cls, spec: EncoderSpec, ignore: tuple[str, ...] = ("arch",)) -> Self:
        """``ignore``: keys the adapter reads itself (``arch`` picks the class within a source)."""
        return cls.from_dict({k: v for k, v in spec.options.items() if k not in ignore}, f"encoder {spec.name!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], owner: str) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{owner}: unknown options {unknown} for {cls.__name__}; known: {sorted(known)}")
        return cls(**{k: _freeze(v) for k, v in data.items()})


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


class Encoder(nn.Module):
    """Base class of every encoder adapter.

    ``preprocess`` turns a list of raw decoded inputs (``PIL.Image`` for image, :class:`ume_mma.io.Audio`
    for audio, ``str`` for text, :class:`ume_mma.io.VideoClip` for video) into one batch;
    ``forward(batch)`` returns ``Tensor[B, embed_dim]``.

    Building never fetches anything. ``load_pretrained`` fetches what ``spec.pretrained`` names (Hub, local
    HF cache or an installed package): weights, processors and, for text encoders, the tokenizer; after
    it, ``preprocess`` and ``forward`` never fetch. A text encoder used without ``load_pretrained`` (random
    init) resolves its tokenizer reference (``options["tokenizer"]``, which may be a Hub repo) on its first
    ``preprocess``.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed_dim = spec.embed_dim

    def preprocess(self, raws: list[Any]) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_pretrained(self) -> None:
        """Load the weights named by ``spec.pretrained``. Encoders without pretrained weights do nothing."""

    @property
    def input_seconds(self) -> float | None:
        """Seconds of audio this encoder looks at (a centred window of a longer input); None = all of it
        (and for encoders that take no audio)."""
        return None

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Training-time augmentation of a preprocessed batch (seeded). Default: none."""
        return batch

    @property
    def device(self) -> torch.device:
        """Where ``forward`` runs: the device of the first parameter or buffer (CPU when there is none)."""
        for t in itertools.chain(self.parameters(), self.buffers()):
            return t.device
        return torch.device("cpu")

    @torch.no_grad()
    def encode(self, raws: list[Any]) -> torch.Tensor:
        """Convenience: preprocess + forward in eval mode -> ``Tensor[B, D]`` on the CPU."""
        if not self.training:  # the usual case (inference): no mode switch over every submodule
            return self(to_device(self.preprocess(raws), self.device)).float().cpu()
        self.eval()
        try:
            return self(to_device(self.preprocess(raws), self.device)).float().cpu()
        finally:
            self.train()


def to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)


def batch_size(batch: Batch) -> int:
    return len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)


def audio_to_tensor(audio: Any, sample_rate: int, seconds: float) -> torch.Tensor:
    """Resample one :class:`ume_mma.io.Audio` to ``sample_rate`` and centre-crop/pad to ``seconds``.
    Returns ``Tensor[N]`` with ``N = sample_rate * seconds``."""
    from ume_mma.io import resample  # the library's one resampler

    wave = torch.from_numpy(resample(audio.samples, audio.sample_rate, sample_rate))
    n = int(round(sample_rate * seconds))
    if wave.numel() >= n:
        start = (wave.numel() - n) // 2
        return wave[start : start + n].contiguous()
    pad = n - wave.numel()
    return nn.functional.pad(wave, (pad // 2, pad - pad // 2))
