"""Small numpy audio helpers: decode, resample, trim/centre/normalise, noise and SNR mixing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from ume_mma.errors import DecodeError
from ume_mma.io import resample as _resample

SR = 8000
CLIP_S = 1.0
TARGET_RMS = 0.1


def read_audio(src: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and native rate of a file (any codec, via :func:`ume_mma.io.load_audio`)
    or of wav bytes (a synthesiser's stdout)."""
    if not isinstance(src, bytes):
        from ume_mma.io import load_audio

        audio = load_audio(src)
        return audio.samples, audio.sample_rate
    try:
        data, sr = sf.read(io.BytesIO(src), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise DecodeError("<bytes>", f"not decodable audio ({exc})") from None
    return data.mean(axis=1), int(sr)


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """``x`` at ``sr_in`` -> float32 at ``sr_out`` (default: the dataset rate), through the library's one
    resampler :func:`ume_mma.io.resample` (also used for speed changes: ``sr_in``/``sr_out`` are lengths)."""
    return _resample(x, sr_in, sr_out)


def frame_rms(x: np.ndarray, frame: int = 160) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return np.sqrt(np.mean(x**2, keepdims=True))
    return np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))


def trim_silence(x: np.ndarray, top_db: float = 40.0, frame: int = 160) -> np.ndarray:
    """Cut leading/trailing 20 ms frames that are silence.

    Silence: below the loudest frame minus ``top_db``, or below the noise floor (5th percentile
    frame) plus 6 dB for noisy recordings; never cuts frames within 25 dB of the loudest.
    """
    if len(x) < frame:
        return x[:0]
    rms = frame_rms(x, frame)
    peak = float(rms.max(initial=0.0))
    if peak <= 0:
        return x[:0]
    floor = float(np.percentile(rms, 5))
    thr = min(max(peak * 10 ** (-top_db / 20), floor * 2.0), peak * 10 ** (-25 / 20))
    loud = np.flatnonzero(rms >= thr)
    return x[loud[0] * frame : min(len(x), (loud[-1] + 1) * frame)]


def fit_clip(x: np.ndarray, sr: int = SR, seconds: float = CLIP_S, max_speedup: float = 1.35) -> np.ndarray:
    """Trim silence, RMS-normalise the speech, centre it in a clip of ``seconds``.

    Speech longer than the clip is sped up (resampled) by up to ``max_speedup``, then cropped.
    """
    n = int(round(sr * seconds))
    x = trim_silence(x.astype(np.float32) - float(np.mean(x)))
    if len(x) == 0:
        raise ValueError("clip is silent")
    if len(x) > n:
        x = resample(x, len(x), max(n, int(len(x) / max_speedup)))
        start = (len(x) - n) // 2
        x = x[start : start + n]
    rms = float(np.sqrt(np.mean(x**2)))
    x = x * (TARGET_RMS / max(rms, 1e-8))
    peak = float(np.abs(x).max())
    if peak > 0.99:
        x = x * (0.99 / peak)
    out = np.zeros(n, np.float32)
    start = (n - len(x)) // 2
    out[start : start + len(x)] = x
    return out


def coloured_noise(n: int, rng: np.random.Generator, exponent: float, sr: int = SR, low_hz: float = 60.0) -> np.ndarray:
    """Unit-variance noise, power ~ 1/f**exponent (0 white, 1 pink, 2 brown), nothing below ``low_hz``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, d=1.0 / sr)
    spec *= np.where(f < low_hz, 0.0, np.maximum(f, low_hz) ** (-exponent / 2))
    out = np.fft.irfft(spec, n)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def speech_power(x: np.ndarray, top_db: float = 40.0) -> float:
    """Mean power of the non-silent part of ``x`` (used as the signal in SNR)."""
    core = trim_silence(x, top_db)
    return float(np.mean(core**2)) if len(core) else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + a*noise`` with speech-power / noise-power = ``snr_db``; peak kept below 1."""
    p_s = speech_power(speech)
    p_n = float(np.mean(noise**2)) + 1e-12
    mix = speech + noise * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    mix = mix * (TARGET_RMS / max(float(np.sqrt(np.mean(mix**2))), 1e-8))
    peak = float(np.abs(mix).max())
    return (mix * (0.99 / peak) if peak > 0.99 else mix).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int = SR) -> None:
    """Write mono 16-bit PCM wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0), sr, subtype="PCM_16")
