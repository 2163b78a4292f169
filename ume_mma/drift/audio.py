"""Audio drift families (:class:`~ume_mma.io.Audio` in, an ``Audio`` at the same sample rate out).

Codecs go through PyAV (its bundled FFmpeg). This build encodes G.711 mu-law (``pcm_mulaw``), AMR-NB
(``libopencore_amrnb``), MP3 (``libmp3lame``) and Opus (``libopus``); it has **no GSM 06.10 encoder**, so the
GSM-like family is AMR-NB, the narrow-band codec of GSM/UMTS phones (4.75-12.2 kbit/s at 8 kHz).
:func:`codec_roundtrip` aligns the decoded signal to the input (codec delay) and keeps its length.

Fitting families: white noise, reverberation, speed, MP3, Opus. Held out (the telephone-like ones): mu-law,
AMR-NB, band limits, pitch.
"""

from __future__ import annotations

import io as _io

import numpy as np

from ume_mma import io
from ume_mma.drift.base import register_drift
from ume_mma.errors import MissingDependencyError

AMR_RATES = (12200, 10200, 7950, 7400, 6700, 5900, 5150, 4750)  # AMR-NB modes, best first
MP3_RATES = (64000, 56000, 48000, 40000, 32000, 24000, 16000, 8000)  # MPEG-2 layer III at 16 kHz
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MAX_DELAY_S = 0.08  # codec delay searched when aligning a decoded signal


def _out(a: io.Audio, y: np.ndarray) -> io.Audio:
    return io.Audio(np.ascontiguousarray(y, dtype=np.float32), a.sample_rate)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _align(y: np.ndarray, x: np.ndarray, max_lag: int) -> np.ndarray:
    """``y`` shifted by the lag in [0, max_lag] that best matches ``x`` (cross-correlation), cut to ``len(x)``."""
    n = len(x)
    if n == 0 or max_lag <= 0:
        return _fit_length(y, n)
    y = np.pad(y, (0, max(0, n + max_lag - len(y))))
    size = 1 << int(np.ceil(np.log2(len(y) + n)))
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)[: max_lag + 1]
    return y[int(np.argmax(corr)) :][:n]


def codec_roundtrip(a: io.Audio, codec: str, fmt: str, rate: int, bit_rate: int | None = None) -> io.Audio:
    """``a`` encoded by PyAV's ``codec`` in a ``fmt`` container at ``rate`` Hz (resampled there and back) with
    ``bit_rate``, decoded again, aligned and cut to ``a``'s length."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is in requirements.txt
        raise MissingDependencyError("audio codec drifts need PyAV: pip install av") from exc
    x = io.resample(a.samples, a.sample_rate, rate)
    buf = _io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray((np.clip(x, -1, 1) * 32767).astype(np.int16)[None], "s16", "mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    parts, decoded_rate = [], rate
    with av.open(_io.BytesIO(buf.getvalue()), "r") as inp:
        for f in inp.decode(audio=0):
            decoded_rate = f.sample_rate
            arr = f.to_ndarray().astype(np.float32)
            arr = arr / 32768.0 if f.format.name.startswith("s16") else arr
            parts.append(arr.mean(0) if arr.shape[0] > 1 and not f.format.is_packed else arr.reshape(-1))
    y = io.resample(np.concatenate(parts) if parts else np.zeros(0, np.float32), decoded_rate, a.sample_rate)
    return _out(a, _align(y, a.samples, int(MAX_DELAY_S * a.sample_rate)))


def _nearest(rate: int, allowed: tuple[int, ...]) -> int:
    return min(allowed, key=lambda r: (abs(r - rate), -r))


def _step(s: float, n: int) -> int:
    """Index 0..n-1 of a discrete setting for severity ``s`` in (0, 1]."""
    return min(n - 1, int(round(s * (n - 1))))


@register_drift("audio.mulaw", "heldout", "G.711 mu-law (PyAV) on a line of 16 kHz * 4 ** -s (8 kHz at s = 0.5)")
def mulaw(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    return codec_roundtrip(a, "pcm_mulaw", "wav", round(16000 * 4.0**-s))


@register_drift("audio.amr-nb", "heldout", "AMR-NB, GSM-like (PyAV, 8 kHz), 12.2 kbit/s down to 4.75 at s = 1")
def amr_nb(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    return codec_roundtrip(a, "libopencore_amrnb", "amr", 8000, AMR_RATES[_step(s, len(AMR_RATES))])


@register_drift("audio.mp3", "fit", "MP3 (PyAV libmp3lame), 64 kbit/s down to 8 at s = 1")
def mp3(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    rate = _nearest(min(a.sample_rate, 16000), MP3_SAMPLE_RATES)
    return codec_roundtrip(a, "libmp3lame", "mp3", rate, MP3_RATES[_step(s, len(MP3_RATES))])


@register_drift("audio.opus", "fit", "Opus (PyAV libopus), 32 kbit/s * (6/32) ** s: 6 kbit/s at s = 1")
def opus(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    rate = _nearest(min(a.sample_rate, 16000), OPUS_SAMPLE_RATES)
    return codec_roundtrip(a, "libopus", "ogg", rate, round(32000 * (6 / 32) ** s))


@register_drift("audio.bandlimit", "heldout", "band-pass 50 + 450 s Hz to Nyquist * (1 - s) + 1200 s Hz (FFT)")
def bandlimit(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    x = a.samples.astype(np.float64)
    spec = np.fft.rfft(x)
    hz = np.fft.rfftfreq(len(x), 1.0 / a.sample_rate)
    low, high = 50 + 450 * s, (a.sample_rate / 2) * (1 - s) + 1200 * s
    spec[(hz < low) | (hz > high)] = 0
    return _out(a, np.fft.irfft(spec, len(x)))


@register_drift("audio.white-noise", "fit", "white noise at an SNR of 40 - 45 s dB (-5 dB at s = 1)")
def white_noise(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    sd = _rms(a.samples) / 10 ** ((40 - 45 * s) / 20)
    return _out(a, a.samples + rng.standard_normal(len(a.samples)) * sd)


def impulse_response(sample_rate: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: a direct impulse, then exponentially decaying noise (60 dB down after ``rt60`` s) from
    5 ms on, with ``wet`` times the direct path's energy."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * (t >= 0.005)
    ir = np.sqrt(wet / max(float(np.sum(tail**2)), 1e-12)) * tail
    ir[0] = 1.0
    return ir


@register_drift("audio.reverb", "fit", "a synthetic room: RT60 0.1 + 0.9 s seconds, reverberant energy 4 s")
def reverb(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    x = a.samples.astype(np.float64)
    ir = impulse_response(a.sample_rate, 0.1 + 0.9 * s, 4.0 * s, rng)
    size = 1 << int(np.ceil(np.log2(len(x) + len(ir))))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return _out(a, y * (_rms(x) / max(_rms(y), 1e-12)))


@register_drift("audio.speed", "fit", "played 1.3 ** (+-s) times as fast, pitch with it (as a wrong sample rate)")
def speed(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    factor = 1.3 ** (s if rng.random() < 0.5 else -s)
    n = len(a.samples)
    return _out(a, io.resample(a.samples, n, max(1, round(n / factor))))


@register_drift("audio.pitch", "heldout", "pitch shifted by 2 ** (+-s / 3) (4 semitones at s = 1), duration kept")
def pitch(a: io.Audio, s: float, rng: np.random.Generator) -> io.Audio:
    """A phase-vocoder time stretch by the pitch factor (torchaudio), then resampled back to the input length."""
    import torch
    import torchaudio.functional as F

    factor = 2.0 ** ((s if rng.random() < 0.5 else -s) / 3)
    n, n_fft, hop = len(a.samples), 512, 128
    x = torch.from_numpy(a.samples.astype(np.float32))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)  # (F, T)
    advance = torch.linspace(0, np.pi * hop, spec.shape[0])[:, None]
    stretched = F.phase_vocoder(spec, 1.0 / factor, advance)
    y = torch.istft(stretched, n_fft, hop, window=window, length=round(n * factor)).numpy()
    return _out(a, _fit_length(io.resample(y, len(y), n), n))
