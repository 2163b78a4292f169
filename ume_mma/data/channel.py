"""A telephone line for speech clips (8 kHz): band-pass 300-3400 Hz and a narrow-band codec (GSM 06.10 full
rate or G.711 mu-law, both through sox), and line/room noises that av-digits never used for training (its
``hard`` setting mixed babble or white/pink/brown noise at 3-9 dB SNR; the shipped checkpoint saw clean speech
only): mains ``hum`` with its harmonics, ``crackle`` (clicks on a hissing line) and ``traffic`` (low rumble
with passing swells).
"""

from __future__ import annotations

import subprocess

import numpy as np

from ume_mma.data.audio import SR, TARGET_RMS, coloured_noise, read_audio
from ume_mma.data.sources import require_tool

CODECS = {"gsm": ["-t", "gsm"], "ulaw": ["-t", "wav", "-e", "u-law", "-b", "8"]}
NOISES = ("hum", "crackle", "traffic")
BAND_HZ = (300, 3400)


def _sox(x: np.ndarray, out_args: list[str], effects: list[str], in_args: list[str] | None = None) -> bytes:
    """``x`` (float32 at 8 kHz) through sox: encoded with ``out_args`` after ``effects``; returns sox's stdout."""
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    raw_in = ["-t", "raw", "-r", str(SR), "-e", "signed-integer", "-b", "16", "-c", "1"]
    sox = [require_tool("sox", "sox libsox-fmt-all"), "-D", "-R"]  # no dither, repeatable: a seeded build
    cmd = [*sox, *(in_args or raw_in), "-", "-r", str(SR), "-c", "1"]
    proc = subprocess.run([*cmd, *out_args, "-", *effects], input=pcm, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"sox failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def telephone(x: np.ndarray, codec: str) -> np.ndarray:
    """``x`` band-passed to 300-3400 Hz, encoded with ``codec`` (``gsm`` or ``ulaw``) and decoded again."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    peak = float(np.abs(x).max()) or 1.0
    encoded = _sox(x * (0.7 / peak), CODECS[codec], ["sinc", f"{BAND_HZ[0]}-{BAND_HZ[1]}"])
    if codec == "gsm":
        decoded, _ = read_audio(_sox_decode(encoded))
    else:
        decoded, _ = read_audio(encoded)
    y = decoded[: len(x)]
    y = np.pad(y, (0, len(x) - len(y))) if len(y) < len(x) else y
    return (y * (peak / 0.7)).astype(np.float32)


def _sox_decode(gsm: bytes) -> bytes:
    """Raw GSM 06.10 frames -> 16-bit wav bytes."""
    cmd = [require_tool("sox"), "-D", "-R", "-t", "gsm", "-r", str(SR), "-c", "1", "-"]
    proc = subprocess.run([*cmd, "-t", "wav", "-e", "signed-integer", "-"], input=gsm, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sox failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def line_noise(kind: str, n: int, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Unit-variance noise of ``kind``: ``hum`` (50 or 60 Hz mains and odd harmonics to ~1 kHz, slight hiss),
    ``crackle`` (sparse decaying clicks on white hiss) or ``traffic`` (brown rumble, slowly swelling)."""
    t = np.arange(n) / sr
    if kind == "hum":
        f0 = float(rng.choice([50.0, 60.0]))
        out = np.zeros(n)
        for k in range(1, 20, 2):
            gain = rng.uniform(0.3, 1.0) / k
            out += gain * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
        out = out + 0.1 * rng.standard_normal(n)
    elif kind == "crackle":
        out = 0.3 * rng.standard_normal(n)
        for start in rng.integers(0, n, size=int(rng.integers(15, 40))):
            length = int(rng.integers(8, 80))
            decay = np.exp(-np.arange(length) / (length / 4))
            click = rng.uniform(3, 10) * rng.choice([-1, 1]) * decay * rng.standard_normal(length)
            out[start : start + length] += click[: n - start]
    elif kind == "traffic":
        swell = 0.4 + 0.6 * np.sin(np.pi * t / t[-1] * rng.uniform(0.5, 1.5) + rng.uniform(0, np.pi)) ** 2
        out = coloured_noise(n, rng, 2.0) * swell + 0.2 * coloured_noise(n, rng, 1.0)
    else:
        raise ValueError(f"noise must be one of {NOISES}, got {kind!r}")
    out = np.asarray(out, np.float64)
    return ((out - out.mean()) / (out.std() + 1e-12)).astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    """RMS to the datasets' level, peak below 1."""
    x = x * (TARGET_RMS / max(float(np.sqrt(np.mean(x**2))), 1e-8))
    peak = float(np.abs(x).max())
    return (x * (0.99 / peak) if peak > 0.99 else x).astype(np.float32)
