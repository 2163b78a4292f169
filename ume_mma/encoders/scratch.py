"""Small from-scratch encoders that train on a CPU in minutes: image CNN, log-mel audio CNN, text CNN."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ume_mma.encoders.base import Encoder, EncoderOptions, audio_to_tensor
from ume_mma.registry import EncoderSpec, register_adapter, register_encoder


@dataclass(frozen=True)
class ImageCNNOptions(EncoderOptions):
    channels: int = 1  # 1 = grayscale, 3 = RGB
    widths: tuple[int, ...] = (32, 64)  # conv channels, one 2x downsampling each


@dataclass(frozen=True)
class AugmentOptions(EncoderOptions):
    """Training-time log-mel augmentation (off unless given)."""

    stretch: tuple[float, float] = (1.0, 1.0)  # time-stretch factor range
    shift: int = 0  # max time shift in frames
    freq_mask: int = 0  # max SpecAugment frequency mask width
    time_mask: int = 0  # max SpecAugment time mask width


@dataclass(frozen=True)
class LogMelOptions(EncoderOptions):
    # The values of scratch.logmel-cnn, which every shipped config uses (the class default of hop was 80
    # before; no stored config relied on it: the v1 fixture stores hop=64).
    seconds: float = 1.0  # centred window the encoder looks at
    n_fft: int = 256
    hop: int = 100
    n_mels: int = 40
    widths: tuple[int, ...] = (16, 32, 64)
    augment: dict[str, Any] | None = None  # AugmentOptions fields


@dataclass(frozen=True)
class HashedTextOptions(EncoderOptions):
    buckets: int = 4096  # hash buckets (id 0 is padding)
    max_tokens: int = 64  # words + bigrams kept per text
    width: int = 128  # embedding width before the projection


def _conv_stack(in_ch: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_ch, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
        in_ch = w
    return nn.Sequential(*layers)


class ImageCNN(Encoder):
    """LeNet-style CNN. Input ``Tensor[B, C, S, S]`` (grayscale or RGB in [-1, 1]) -> ``Tensor[B, D]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        self.options = ImageCNNOptions.from_spec(spec)
        self.channels = self.options.channels
        widths = list(self.options.widths)
        self.features = _conv_stack(self.channels, widths)
        self.proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(widths[-1] * 4, spec.embed_dim), nn.ReLU()
        )

    def preprocess(self, raws: list[Any]) -> torch.Tensor:
        mode = "L" if self.channels == 1 else "RGB"
        size = (self.spec.image_size, self.spec.image_size)
        arrays = [np.asarray(img.convert(mode).resize(size), dtype=np.float32) for img in raws]
        x = torch.from_numpy(np.stack(arrays)) / 127.5 - 1.0  # (B, S, S[, 3])
        return x.unsqueeze(1) if self.channels == 1 else x.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x))  # (B, D)


class LogMelCNN(Encoder):
    """3-layer CNN over a log-mel spectrogram.

    ``preprocess``: waveforms -> ``Tensor[B, M, T]``; forward -> ``Tensor[B, D]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        import torchaudio

        o = self.options = LogMelOptions.from_spec(spec)
        self.augment_options = (
            AugmentOptions.from_dict(o.augment, f"encoder {spec.name!r} augment") if o.augment else None
        )
        self.seconds = float(o.seconds)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=o.n_fft, hop_length=o.hop, n_mels=o.n_mels
        )
        # torch.hann_window(n) is a view into n+1 values; safetensors refuses such partial storages.
        self.mel.spectrogram.window = self.mel.spectrogram.window.clone()
        widths = list(o.widths)
        self.features = _conv_stack(1, widths)
        self.proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], spec.embed_dim), nn.ReLU()
        )

    @property
    def input_seconds(self) -> float:
        """The centred window of each clip the spectrogram covers (``options.seconds``)."""
        return self.seconds

    @torch.no_grad()
    def preprocess(self, raws: list[Any]) -> torch.Tensor:
        """Waveforms -> per-clip normalised log-mel ``Tensor[B, M, T]`` (computed once, cacheable)."""
        wave = torch.stack([audio_to_tensor(a, self.spec.sample_rate, self.seconds) for a in raws])  # (B, N)
        spec = torch.log(self.mel.to(wave.device)(wave) + 1e-6)  # (B, M, T)
        return (spec - spec.mean(dim=(1, 2), keepdim=True)) / (spec.std(dim=(1, 2), keepdim=True) + 1e-5)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(spec.unsqueeze(1)))  # (B, M, T) -> (B, D)

    @torch.no_grad()
    def augment(self, spec: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Speed perturbation (time stretch of the log-mel), time shift, and SpecAugment masks.
        Synthetic training voices speak faster than real speakers: stretching narrows that gap."""
        o = self.augment_options
        if o is None:
            return spec
        b, m, t = spec.shape
        out = torch.empty_like(spec)
        lo, hi = o.stretch
        floor = spec.amin(dim=(1, 2))  # (B,) padding value: the clip's quietest level
        for i in range(b):
            r = torch.rand(4, generator=generator)
            f = lo + float(r[0]) * (hi - lo)
            n = max(2, round(t * f))
            x = nn.functional.interpolate(spec[i : i + 1], size=n, mode="linear", align_corners=False)[0]  # (M, n)
            x = (
                x[:, (n - t) // 2 : (n - t) // 2 + t]
                if n >= t
                else nn.functional.pad(x, ((t - n) // 2, t - n - (t - n) // 2), value=float(floor[i]))
            )
            shift = int((float(r[1]) - 0.5) * 2 * o.shift)
            x = torch.roll(x, shift, dims=1)
            fw, tw = int(float(r[2]) * o.freq_mask), int(float(r[3]) * o.time_mask)
            if fw:
                f0 = int(torch.randint(0, m - fw + 1, (1,), generator=generator))
                x[f0 : f0 + fw] = 0.0
            if tw:
                t0 = int(torch.randint(0, t - tw + 1, (1,), generator=generator))
                x[:, t0 : t0 + tw] = 0.0
            out[i] = x
        return out


class HashedTextCNN(Encoder):
    """Word-hashing text encoder (no vocabulary file): bag of hashed words and bigrams -> MLP.
    Input ``Tensor[B, L]`` of bucket ids (0 = padding) -> ``Tensor[B, D]``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__(spec)
        self.options = HashedTextOptions.from_spec(spec)
        self.buckets = self.options.buckets
        self.max_tokens = self.options.max_tokens
        width = self.options.width
        self.embed = nn.EmbeddingBag(self.buckets + 1, width, mode="mean", padding_idx=0)
        self.proj = nn.Sequential(nn.Linear(width, spec.embed_dim), nn.ReLU())

    def _ids(self, text: str) -> list[int]:
        words = re.findall(r"\w+", text.lower())
        grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        digest = (hashlib.blake2b(g.encode(), digest_size=4).digest() for g in grams)
        return [1 + int.from_bytes(d, "little") % self.buckets for d in digest][: self.max_tokens]

    def preprocess(self, raws: list[Any]) -> torch.Tensor:
        ids = torch.zeros(len(raws), self.max_tokens, dtype=torch.long)
        for i, text in enumerate(raws):
            row = self._ids(str(text))
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids  # (B, L)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # An empty text is a present input: its bag is all padding, so EmbeddingBag gives zeros.
        return self.proj(self.embed(ids))  # (B, D)


_BUILDERS = {"image_cnn": ImageCNN, "logmel_cnn": LogMelCNN, "hashed_text": HashedTextCNN}


@register_adapter("scratch")
def build_scratch(spec: EncoderSpec) -> Encoder:
    arch = spec.options.get("arch")
    if arch not in _BUILDERS:
        raise ValueError(f"encoder {spec.name!r}: unknown scratch arch {arch!r}; known: {sorted(_BUILDERS)}")
    return _BUILDERS[arch](spec)


register_encoder(
    EncoderSpec(
        name="scratch.image-cnn",
        modality="image",
        source="scratch",
        embed_dim=128,
        image_size=28,
        options={"arch": "image_cnn", "channels": 1, "widths": [32, 64]},
        description="LeNet-style CNN on 28x28 grayscale images, trained from scratch",
    )
)
register_encoder(
    EncoderSpec(
        name="scratch.image-cnn-rgb",
        modality="image",
        source="scratch",
        embed_dim=128,
        image_size=64,
        options={"arch": "image_cnn", "channels": 3, "widths": [32, 64, 64]},
        description="small CNN on 64x64 RGB images, trained from scratch",
    )
)
register_encoder(
    EncoderSpec(
        name="scratch.logmel-cnn",
        modality="audio",
        source="scratch",
        embed_dim=128,
        sample_rate=8000,
        options={"arch": "logmel_cnn", "seconds": 1.0, "n_fft": 256, "hop": 100, "n_mels": 40, "widths": [16, 32, 64]},
        description="3-layer CNN on 1 s of 8 kHz log-mel spectrogram, trained from scratch",
    )
)
register_encoder(
    EncoderSpec(
        name="scratch.hashed-text",
        modality="text",
        source="scratch",
        embed_dim=128,
        options={"arch": "hashed_text", "buckets": 4096, "max_tokens": 64, "width": 128},
        description="bag of hashed words and bigrams, trained from scratch",
    )
)
