"""The one decode path: a source (file path or text) of some kind -> what an encoder's ``preprocess`` takes.

Training and evaluation (:mod:`ume_mma.features`) and prediction (:mod:`ume_mma.predictor`) all decode
through :class:`Decoder`, with the same :class:`Limits` and the same audio window: only the centred
``encoder.input_seconds`` (+ :data:`WINDOW_MARGIN_S`) of a long audio input is decoded, since the encoder
looks at nothing else. Limits are enforced, never silently applied: an input over a cap raises
:class:`~ume_mma.errors.DecodeError` naming the file (a training set with an over-long clip fails loudly
instead of being trained on something else than what the app would see).

Kinds of source (what feeds a branch):

=============  ==================  ====================================================
kind           source              decoded to (a list of raws for one input)
=============  ==================  ====================================================
``text``       the text            ``[str]``
``image``      image file          ``[PIL.Image]``
``audio``      audio file          ``[io.Audio]`` (any file with a soundtrack)
``frames``     video file          K ``PIL.Image`` frames, at most ``frame_side`` px
``soundtrack`` video file          ``[io.Audio]``, or None when the video is silent
``video``      video file          ``[io.VideoClip]`` (for a ``video`` modality encoder)
=============  ==================  ====================================================
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume_mma import io
from ume_mma.errors import DecodeError

KINDS = ("text", "image", "audio", "frames", "soundtrack", "video")
# The kind of a dataset sample's own input for each modality (training decodes no video into frames).
SAMPLE_KIND = {"text": "text", "image": "image", "audio": "audio", "video": "video"}
FRAME_SIDE = 256  # frames are kept at most this large (or twice the image encoder's input) on the long side
WINDOW_MARGIN_S = 1.0  # seconds decoded beyond the encoder's window, so resampling edges fall outside it
SOUNDTRACK_RATE = 16000  # rate of soundtracks when no audio encoder asks for one


@dataclass(frozen=True)
class Limits:
    """Input caps; ``None`` = no cap. Over a cap, decoding raises ``DecodeError`` naming the file.
    ``max_audio_seconds`` caps audio files (the whole file, even when only a window is decoded); a video's
    soundtrack falls under ``max_video_seconds``. ``max_image_pixels`` caps images and video frames alike."""

    max_file_bytes: int | None = 200 * 2**20
    max_video_seconds: float | None = 120.0
    max_audio_seconds: float | None = 120.0
    max_image_pixels: int = io.MAX_IMAGE_PIXELS


def check_file(path: str | Path, limits: Limits) -> Path:
    """``path`` as a Path if it is a file within ``limits.max_file_bytes``, else ``DecodeError``."""
    p = path if isinstance(path, Path) else Path(path)
    try:
        st = p.stat()
    except io.MISSING_FILE:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise DecodeError(p, "file does not exist")
    size, cap = st.st_size, limits.max_file_bytes
    if cap is not None and size > cap:
        raise DecodeError(p, f"file is {size / 2**20:.1f} MB, the limit is {cap / 2**20:.0f} MB")
    return p


def frame_side(encoders: Mapping[str, Any]) -> int:
    """Longest side (pixels) worth keeping of a video frame for ``encoders``: twice the input size of the
    image (or frame-based video) encoder, at least :data:`FRAME_SIDE` (enough for a gallery thumbnail). Frames
    are scaled down to it while decoding, so large videos cost little memory and the caches hold small frames."""
    sizes = [getattr(getattr(encoders.get(m), "spec", None), "image_size", None) for m in ("image", "video")]
    return max([FRAME_SIDE] + [2 * s for s in sizes if s])


def audio_window(encoder: Any) -> float | None:
    """Seconds of audio worth decoding for ``encoder`` (an :class:`~ume_mma.encoders.base.Encoder`): its
    ``input_seconds`` plus the margin, centred; None = all of it (also for encoders that do not say)."""
    seconds = getattr(encoder, "input_seconds", None)
    return float(seconds) + WINDOW_MARGIN_S if seconds else None


@dataclass(frozen=True)
class Decoder:
    """Decodes sources for one model. ``audio_rate``: rate of decoded audio (None = the file's own; soundtracks
    fall back to 16 kHz); ``audio_window``: seconds of audio decoded, centred (None = all); ``soundtrack``:
    whether video clips carry their soundtrack (only an audio encoder uses it); ``frame_side``: the longest
    side of decoded video frames (larger frames are scaled down while decoding; None keeps full size)."""

    limits: Limits = field(default_factory=Limits)
    num_frames: int = 8
    frame_side: int | None = FRAME_SIDE
    audio_rate: int | None = None
    audio_window: float | None = None
    soundtrack: bool = True

    @classmethod
    def for_encoders(cls, encoders: Mapping[str, Any], limits: Limits | None = None, num_frames: int = 8) -> Decoder:
        """The decoder of a model whose encoders are ``encoders`` (modality -> Encoder): the audio settings
        come from its ``audio`` encoder, when it has one."""
        audio = encoders.get("audio")
        return cls(
            limits=limits or Limits(),
            num_frames=num_frames,
            audio_rate=audio.spec.sample_rate if audio is not None else None,
            audio_window=audio_window(audio) if audio is not None else None,
            soundtrack=audio is not None,
            frame_side=frame_side(encoders),
        )

    def __call__(self, kind: str, source: Any, clips: dict[Path, io.VideoClip] | None = None) -> list[Any] | None:
        """Raws of one input for ``preprocess``; None for the soundtrack of a silent video. ``clips`` shares
        decoded videos between kinds (frames and soundtrack of one file are decoded once)."""
        if kind == "text":
            return [source]
        if kind not in KINDS:
            raise ValueError(f"unknown source kind {kind!r}; known: {list(KINDS)}")
        p = check_file(source, self.limits)
        if kind == "image":
            return [io.load_image(p, self.limits.max_image_pixels)]
        if kind == "audio":
            return [io.load_audio(p, self.audio_rate, self.limits.max_audio_seconds, self.audio_window)]
        clip = self.clip(p, clips)
        if kind == "frames":
            return list(clip.frames)
        if kind == "soundtrack":
            return None if clip.audio is None else [clip.audio]
        return [clip]

    def clip(self, path: Path, clips: dict[Path, io.VideoClip] | None = None) -> io.VideoClip:
        """The decoded video at ``path`` (K frames + soundtrack as configured), from ``clips`` if there."""
        if clips is not None and path in clips:
            return clips[path]
        clip = io.load_video(
            path,
            self.num_frames,
            self.audio_rate or SOUNDTRACK_RATE,
            self.limits.max_video_seconds,
            audio_window=self.audio_window if self.soundtrack else 0,
            max_pixels=self.limits.max_image_pixels,
            max_side=self.frame_side,
        )
        if clips is not None:
            clips[path] = clip
        return clip

    def sample(self, sample: Any, modality: str) -> Any:
        """One dataset sample's raw input for ``modality`` (its text, or its own file decoded)."""
        kind = SAMPLE_KIND[modality]
        raws = self(kind, sample.text if kind == "text" else sample.path(modality))
        assert raws is not None and len(raws) == 1
        return raws[0]
