"""Live inputs: a microphone's rolling audio window and a camera's latest frame, and whether each is there.

A live branch is *present*, or *missing* for a reason said in words: no camera or no microphone (nothing
arrived for :data:`STALE_SECONDS`), a black frame (a covered lens), a frozen frame (pixel-identical for
:data:`FROZEN_SECONDS`), or silence (a muted microphone). A missing branch is left out of the inputs, so the
predictor's presence mask says it is absent: it is never fed a black image or a zero waveform.

Thresholds (documented in docs/app.md, "Live"):

- silence: the loudest :data:`BLOCK_SECONDS` block of the window is quieter than :data:`SILENCE_DBFS` (dB
  relative to full scale; a quiet room through a laptop microphone is about -60 dBFS, speech -30 to -10);
- black: the brightest 1% of the frame's pixels are darker than :data:`BLACK_LUMA` (of 255), so a white digit
  on a black page is not black while a covered lens is;
- frozen: no pixel changed for :data:`FROZEN_SECONDS` (a real camera's sensor noise changes some every frame);
- utterance: what the audio branch hears is the window's last complete utterance (sound within
  :data:`UTTERANCE_DB` of the loudest block, pauses under :data:`UTTERANCE_GAP` s bridged, padded by
  :data:`UTTERANCE_PAD` s; one cut by the window's start or end is used only when there is no other), as
  the training clips were silence-trimmed words: a word cut in two by the window's edge is not a word;
- the same utterance (one span of the stream) while the window slides over it is handed over as the same
  file, so the audio encoder runs once per word, not once per chunk;
- still: the frame differs from the one last encoded by less than :data:`STILL_DIFF` grey levels on average:
  the same view, so the file of that frame is passed again and its encoder output comes from the cache.

Frames are ``np.ndarray[H, W, 3]`` (uint8 RGB) or ``[H, W]`` (grey); audio chunks ``np.ndarray[N]`` or
``[N, C]`` of int16 (as Gradio streams them) or floats in [-1, 1].
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

__all__ = [
    "AudioWindow",
    "LiveSession",
    "Presence",
    "frame_change",
    "is_black",
    "is_silent",
    "loudest_dbfs",
    "read_wav_chunk",
    "utterance",
    "utterance_span",
]

SILENCE_DBFS = -50.0  # the loudest block of the window below this: silence
BLOCK_SECONDS = 0.05  # block length of the loudness measure
BLACK_LUMA = 24.0  # the 99th percentile of a frame's luma (0..255) below this: black
FROZEN_SECONDS = 2.0  # pixel-identical frames for this long: frozen
STILL_DIFF = 1.5  # mean absolute luma difference (0..255) below this: the same view, not encoded again
UTTERANCE_DB = 30.0  # blocks within this many dB of the window's loudest are sound, the rest pauses
UTTERANCE_GAP = 0.15  # seconds: a shorter pause does not end an utterance
UTTERANCE_PAD = 0.1  # seconds kept before and after an utterance
STALE_SECONDS = 1.0  # no chunk for this long: no camera / no microphone
DEFAULT_WINDOW_SECONDS = 2.0  # audio window when the audio encoder does not say how much it reads


@dataclass(frozen=True)
class Presence:
    """A live branch's state: ``present``, ``missing`` (``reason`` says why) or ``unfamiliar`` (set by the caller
    from the prediction's reliability: present, but unlike the branch's training inputs)."""

    state: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else self.state


def as_float(samples: np.ndarray) -> np.ndarray:
    """Audio ``[N]`` or ``[N, C]`` (int16 or float) -> mono float32 ``[N]`` in [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float32, copy=False)
    return x.mean(axis=1) if x.ndim == 2 else x.reshape(-1)


def loudest_dbfs(samples: np.ndarray, rate: int, block_seconds: float = BLOCK_SECONDS) -> float:
    """The RMS level (dBFS) of the loudest ``block_seconds`` block of ``samples`` (``[N]``, floats in [-1, 1]);
    ``-inf`` for digital silence or no samples."""
    x = as_float(samples)
    block = max(1, int(rate * block_seconds))
    n = len(x) // block * block or len(x)
    if n == 0:
        return float("-inf")
    blocks = x[:n].reshape(-1, min(block, n)) if len(x) >= block else x[None, :]
    rms = float(np.sqrt((blocks.astype(np.float64) ** 2).mean(axis=1)).max())
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def is_silent(samples: np.ndarray, rate: int, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether even the loudest block of ``samples`` is quieter than ``threshold_dbfs``."""
    return loudest_dbfs(samples, rate) < threshold_dbfs


def utterance_span(samples: np.ndarray, rate: int, offset: int = 0, block_seconds: float = 0.02) -> tuple[int, int]:
    """Where the last complete utterance of ``samples`` (``[N]``) is: ``[start, end)`` in the stream's sample
    numbers, ``samples[0]`` being number ``offset``. The latest stretch of sound that neither starts at the
    window's first block nor runs into its last (a word still being said), else the loudest stretch, with
    :data:`UTTERANCE_PAD` s around it. Blocks are aligned to the stream, not the window, so one word keeps
    one span while the window slides over it (and its encoder output is reused)."""
    x = as_float(samples)
    block = max(1, int(rate * block_seconds))
    skip = (-offset) % block
    n = (len(x) - skip) // block
    if n <= 0:
        return offset, offset + len(x)
    energy = (x[skip : skip + n * block].astype(np.float64).reshape(n, block) ** 2).mean(axis=1)
    db = 10 * np.log10(energy + 1e-12)
    loud = db > db.max() - UTTERANCE_DB
    gap = int(UTTERANCE_GAP / block_seconds)
    runs, start, quiet = [], None, 0
    for i, on in enumerate(loud):
        if on:
            start, quiet = (i if start is None else start), 0
        elif start is not None:
            quiet += 1
            if quiet > gap:
                runs.append((start, i - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        runs.append((start, n - quiet))
    whole = [r for r in runs if r[0] > 0 and r[1] < n]  # not cut by the window's start or end
    first, last = whole[-1] if whole else max(runs, key=lambda r: energy[r[0] : r[1]].sum())
    pad = int(UTTERANCE_PAD * rate)
    return offset + max(0, skip + first * block - pad), offset + min(len(x), skip + last * block + pad)


def utterance(samples: np.ndarray, rate: int) -> np.ndarray:
    """The samples of :func:`utterance_span` (``[N]`` -> ``[M]`` floats)."""
    start, end = utterance_span(samples, rate)
    return as_float(samples)[start:end]


def luma(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` RGB (or ``[H, W]`` grey) -> ``[H, W]`` float32 luma 0..255 (ITU-R BT.601 weights)."""
    f = np.asarray(frame, dtype=np.float32)
    if f.ndim == 3:
        f = f[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return f


def is_black(frame: np.ndarray, threshold: float = BLACK_LUMA) -> bool:
    """Whether the brightest 1% of the frame's pixels are darker than ``threshold`` (a covered lens)."""
    return float(np.percentile(luma(frame), 99)) < threshold


def frame_change(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Mean absolute luma difference of two frames (0..255); ``inf`` when one is missing or the sizes differ."""
    if a is None or b is None or np.shape(a)[:2] != np.shape(b)[:2]:
        return float("inf")
    return float(np.abs(luma(a) - luma(b)).mean())


def centre_square(frame: np.ndarray) -> np.ndarray:
    """The largest centred square of ``frame`` (``[H, W, ...]`` -> ``[S, S, ...]``, S = min(H, W)): image
    encoders read square inputs, and a held-up picture is in the middle of the view."""
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frame[top : top + s, left : left + s]


class AudioWindow:
    """The last ``seconds`` of a microphone stream at its own rate (chunks appended; a new rate starts over)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.rate = 0
        self.samples = np.zeros(0, dtype=np.float32)  # [N], N <= seconds * rate
        self.chunks = 0  # chunks received so far (a new chunk = a new window)
        self.received = 0.0  # seconds of sound received so far
        self.total = 0  # samples received at this rate: the stream number of the sample after the window

    def push(self, rate: int, chunk: np.ndarray) -> None:
        x = as_float(chunk)
        if rate != self.rate:
            self.rate, self.samples, self.total = int(rate), np.zeros(0, dtype=np.float32), 0
        keep = int(self.seconds * self.rate)
        self.samples = np.concatenate([self.samples, x])[-keep:]
        self.chunks += 1
        self.total += len(x)
        self.received += len(x) / self.rate

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0


@dataclass
class _Shown:
    """A file last handed to the predictor and what it was made from."""

    path: Path | None = None
    source: Any = None  # the frame (array) or the utterance's span in the stream it was written from
    previous: Path | None = None  # the file before it (kept one update longer: a snapshot may be reading it)


@dataclass
class LiveSession:
    """One browser session's live inputs: the rolling audio window, the latest frame, and the files handed to
    the predictor (written to ``folder``; the last two of each kind are kept). ``lock``: held while an update
    is computed; an update that finds it taken is dropped (:meth:`try_update`)."""

    folder: Path
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    audio: AudioWindow = field(init=False)
    frame: np.ndarray | None = None  # the latest frame, [H, W, 3] uint8
    frame_time: float | None = None  # when it arrived (time.monotonic())
    audio_time: float | None = None
    changed_time: float | None = None  # when a pixel last changed
    lock: threading.Lock = field(default_factory=threading.Lock)
    _image: _Shown = field(default_factory=_Shown)
    _sound: _Shown = field(default_factory=_Shown)
    _count: int = 0

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.audio = AudioWindow(self.window_seconds)

    def push_audio(self, rate: int, chunk: np.ndarray, now: float | None = None) -> None:
        self.audio.push(rate, chunk)
        self.audio_time = time.monotonic() if now is None else now

    def push_frame(self, frame: np.ndarray, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        frame = np.asarray(frame)
        if self.frame is None or frame.shape != self.frame.shape or not np.array_equal(frame, self.frame):
            self.changed_time = now
        self.frame, self.frame_time = frame, now

    def image_presence(self, now: float | None = None) -> Presence:
        now = time.monotonic() if now is None else now
        if self.frame is None or self.frame_time is None or now - self.frame_time > STALE_SECONDS:
            return Presence("missing", "no camera")
        if is_black(self.frame):
            return Presence("missing", "black frame")
        if self.changed_time is not None and now - self.changed_time >= FROZEN_SECONDS:
            return Presence("missing", "frozen frame")
        return Presence("present")

    def audio_presence(self, now: float | None = None) -> Presence:
        now = time.monotonic() if now is None else now
        if self.audio_time is None or now - self.audio_time > STALE_SECONDS or not len(self.audio.samples):
            return Presence("missing", "no microphone")
        if is_silent(self.audio.samples, self.audio.rate):
            return Presence("missing", "silence")
        return Presence("present")

    def inputs(self, modalities: list[str], now: float | None = None) -> tuple[dict[str, Any], dict[str, Presence]]:
        """The predictor's inputs for ``modalities`` (``image``/``audio`` paths of the present branches; a
        missing branch has no key) and every live branch's :class:`Presence`. An unchanged frame or window
        is passed as the same file, so its encoder output comes from the predictor's cache."""
        now = time.monotonic() if now is None else now
        found: dict[str, Any] = {}
        states: dict[str, Presence] = {}
        if "image" in modalities:
            states["image"] = self.image_presence(now)
            if states["image"].state == "present":
                found["image"] = str(self._image_file())
        if "audio" in modalities:
            states["audio"] = self.audio_presence(now)
            if states["audio"].state == "present":
                found["audio"] = str(self._audio_file())
        return found, states

    def _image_file(self) -> Path:
        if self._image.path is not None and frame_change(self._image.source, self.frame) < STILL_DIFF:
            return self._image.path  # the same view: the predictor finds its features in the cache
        path = self._next("frame", "png")
        Image.fromarray(np.ascontiguousarray(centre_square(self.frame))).save(path, compress_level=1)
        self._image = self._replace(self._image, path, self.frame)
        return path

    def _audio_file(self) -> Path:
        first = self.audio.total - len(self.audio.samples)  # the stream number of the window's first sample
        span = utterance_span(self.audio.samples, self.audio.rate, first)
        if self._sound.path is not None and self._sound.source == span:
            return self._sound.path  # the same utterance (the window slid over it): its features are cached
        path = self._next("window", "wav")
        sf.write(path, self.audio.samples[span[0] - first : span[1] - first], self.audio.rate, subtype="PCM_16")
        self._sound = self._replace(self._sound, path, span)
        return path

    def _next(self, stem: str, ext: str) -> Path:
        self._count += 1
        return self.folder / f"{stem}-{self._count}.{ext}"

    def _replace(self, old: _Shown, path: Path, source: Any) -> _Shown:
        """The new file shown; the previous one is kept one update longer, the one before is removed."""
        if old.previous is not None and old.previous != path:
            old.previous.unlink(missing_ok=True)
        return _Shown(path, source, old.path)

    def snapshot(self, folder: Path) -> dict[str, str]:
        """Copy the current window to ``folder``: ``image`` (the latest frame's centre square, PNG) and ``audio``
        (the audio window's utterance, WAV: what the branches were given), each only when there is one.
        Returns modality -> path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        if self.frame is not None:
            out["image"] = str(folder / "frame.png")
            Image.fromarray(np.ascontiguousarray(centre_square(self.frame))).save(out["image"])
        if len(self.audio.samples):
            out["audio"] = str(folder / "window.wav")
            sf.write(out["audio"], utterance(self.audio.samples, self.audio.rate), self.audio.rate, subtype="PCM_16")
        return out


def read_wav_chunk(path: str | Path) -> tuple[int, np.ndarray]:
    """A streamed microphone chunk (a 16-bit PCM WAV file) -> ``(rate, int16 [N] or [N, C])``, reading every
    sample after the header. Gradio's browser code sends the chunks that piled up while an update was computed
    as one file whose header still gives the size of the first: a reader that trusts that size keeps 0.1 s of
    0.5 s."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{Path(path).name} is not a WAV file")
    channels = int.from_bytes(data[22:24], "little")
    rate = int.from_bytes(data[24:28], "little")
    bits = int.from_bytes(data[34:36], "little")
    start = data.find(b"data", 12)
    if bits != 16 or channels < 1 or start < 0:
        raise ValueError(f"{Path(path).name}: expected 16-bit PCM, got {bits} bits, {channels} channels")
    pcm = data[start + 8 :]
    samples = np.frombuffer(pcm[: len(pcm) // (2 * channels) * 2 * channels], dtype="<i2")
    return rate, samples.reshape(-1, channels) if channels > 1 else samples


def window_seconds(encoders: Mapping[str, Any]) -> float:
    """How much audio the live window holds: what the audio encoder reads (``input_seconds``), else
    :data:`DEFAULT_WINDOW_SECONDS`."""
    seconds = getattr(encoders["audio"], "input_seconds", None) if "audio" in encoders else None
    return float(seconds) if seconds else DEFAULT_WINDOW_SECONDS
