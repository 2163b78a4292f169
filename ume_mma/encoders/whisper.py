"""Whisper's audio preprocessing and pooling, shared by the ``transformers`` and CTranslate2 Whisper encoders."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ume_mma.encoders.base import audio_to_tensor


def whisper_window(
    raws: list[Any], sample_rate: int, seconds: float, align: str = "start", hop: int = 160
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each clip in a ``seconds`` window -> waves ``(B, N)`` and the encoder-frame span ``(B, 2)`` it covers
    (one Whisper encoder frame = 2 mel frames = ``2 * hop`` samples). Longer clips are centre-cropped; shorter
    ones start the window (``align="start"``, as Whisper was trained: the embedding then barely depends on the
    padding) or sit in its centre (``align="centre"``)."""
    window = int(round(sample_rate * seconds))
    frames = window // hop // 2
    waves, spans = [], []
    for audio in raws:
        n = min(window, int(round(len(audio.samples) * sample_rate / audio.sample_rate)))
        wave = audio_to_tensor(audio, sample_rate, n / sample_rate)  # resampled, (n,)
        start = (window - n) // 2 if align == "centre" else 0
        waves.append(nn.functional.pad(wave, (start, window - n - start)))
        first = min(start // (2 * hop), frames - 1)
        spans.append((first, max(first + 1, min(frames, -(-(start + n) // (2 * hop))))))
    return torch.stack(waves), torch.tensor(spans, dtype=torch.long)


def pool_span(hidden: torch.Tensor, span: torch.Tensor, segments: int = 1) -> torch.Tensor:
    """Mean of the frames inside ``span`` only (never the padding), split into ``segments`` equal parts
    that are concatenated. ``hidden (B, T, C)``, ``span (B, 2)`` -> ``(B, segments * C)``."""
    rows = []
    for h, (start, end) in zip(hidden, span.tolist()):
        edges = np.linspace(start, end, segments + 1)
        parts = []
        for k in range(segments):
            a = min(int(edges[k]), end - 1)
            parts.append(h[a : max(a + 1, int(edges[k + 1]))].mean(0))
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def whisper_log_mel(
    waves: torch.Tensor, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160
) -> torch.Tensor:
    """Whisper's log-mel spectrogram (as ``WhisperFeatureExtractor``): power STFT, Slaney mel filters,
    log10, clamp to (max - 8), then (x + 4) / 4. ``waves (B, N)`` -> ``(B, n_mels, N // hop)``."""
    import torchaudio.functional as AF

    stft = torch.stft(waves, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = stft[..., :-1].abs() ** 2  # (B, n_fft // 2 + 1, frames)
    fb = AF.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
    )
    log = torch.clamp(fb.T @ power, min=1e-10).log10()
    log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (log + 4.0) / 4.0
