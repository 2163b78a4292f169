"""Decoding of user files: images (PIL), audio (soundfile, then PyAV) and video (PyAV, seek-based).

Every failure raises `DecodeError(path, problem)`; no raw PIL/av/soundfile exception escapes. The problem says
what is wrong with the input in words (what the file is instead, which cap it passes), never a library's
internals. Degenerate inputs are refused, not guessed at: audio with NaN or infinite samples, audio shorter
than `MIN_AUDIO_SECONDS`, a WAV header announcing far more data than the file holds, images and video frames
with a side under `MIN_IMAGE_SIDE` or over the pixel cap, containers whose stream index is damaged.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from PIL import Image, ImageOps, UnidentifiedImageError

from ume_mma.errors import DecodeError

__all__ = [
    "Audio",
    "VideoClip",
    "MAX_IMAGE_PIXELS",
    "MIN_AUDIO_SECONDS",
    "MIN_IMAGE_SIDE",
    "WINDOW_SLACK_S",
    "load_image",
    "load_audio",
    "load_video",
    "probe_kind",
    "resample",
]

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS: int = 40_000_000
# Degenerate inputs are refused: an image (or video frame) smaller than this on a side shows nothing an encoder
# can use (a 1x1 picture); audio shorter than this holds no sound an encoder can use (a 1-sample WAV).
MIN_IMAGE_SIDE: int = 8
MIN_AUDIO_SECONDS: float = 0.1
# An audio window is decoded only when the audio is longer than the window plus this slack (seconds).
WINDOW_SLACK_S: float = 1.0
# Resampling between rates whose reduced ratio p/q has p or q above this uses the FFT, not a polyphase kernel.
_MAX_POLYPHASE = 1000
# FFmpeg demuxers refused for user files: playlists read other files or URLs; the others are chosen
# from the file name alone (image2 also expands name patterns; tty & co. show any text as "video").
_PLAYLIST_FORMATS = {"hls", "concat", "ffconcat", "dash", "webm_dash_manifest"}
_NAME_ONLY_FORMATS = {"image2", "tty", "bin", "adf", "idf", "xbin"}


@dataclass(frozen=True)
class Audio:
    """Mono waveform: `samples` float32 [N], roughly in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class VideoClip:
    """K RGB frames sampled evenly over the video, their times (s), and the mono soundtrack (or None)."""

    frames: list[Image.Image]
    frame_times: list[float]
    audio: Audio | None
    duration: float
    fps: float | None


# What a stat raises for a path that names no file (as Path.exists and Path.is_file answer False; other errors, such
# as a permission denied, propagate).
MISSING_FILE = (FileNotFoundError, NotADirectoryError, ValueError)


def _check_file(path: str | os.PathLike) -> Path:
    """The path as a Path if it names a non-empty regular file, else DecodeError."""
    p = path if isinstance(path, Path) else Path(path)
    try:
        st = p.stat()  # one stat answers all three questions
    except MISSING_FILE:
        raise DecodeError(p, "file does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(p, "is not a regular file")
    if st.st_size == 0:
        raise DecodeError(p, "file is empty (0 bytes)")
    return p


# ----------------------------------------------------------------------------- images
def load_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Fully loaded RGB image (EXIF orientation applied, alpha composited on white); refuses > max_pixels."""
    p = _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _check_size(p, "image", im.width, im.height, max_pixels)
                return _to_rgb(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise DecodeError(
            p, f"image has {found.group(1) if found else 'too many'} pixels, more than the limit {limit}"
        ) from None
    except UnidentifiedImageError:
        raise DecodeError(p, _not_an_image(p)) from None
    except DecodeError:
        raise
    except Exception as e:  # PIL plugins raise OSError, SyntaxError, ValueError, struct.error, ...
        raise DecodeError(p, f"image cannot be decoded: the file is truncated or corrupt ({e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy: 16-bit/float gray rescaled to 8 bits, transparency composited on white."""
    if im.mode.startswith(("I", "F")):
        a = np.asarray(im, dtype=np.float32)
        top = float(a.max()) if a.size else 0.0
        scale = 255.0 / 65535.0 if top > 255 else (255.0 if im.mode == "F" and top <= 1.0 else 1.0)
        im = Image.fromarray(np.clip(a * scale, 0, 255).astype(np.uint8))
    if "A" in im.mode or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _check_size(p: Path, what: str, width: int, height: int, max_pixels: int | None) -> None:
    """DecodeError when a ``what`` ("image", "video frames") of width x height is over ``max_pixels`` or has a
    side under :data:`MIN_IMAGE_SIDE` (too small to show anything)."""
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(
            p,
            f"{what} {'have' if what.endswith('s') else 'has'} {width * height} pixels, more than the limit "
            f"{max_pixels}" + (f" ({width}x{height})" if what != "image" else ""),
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DecodeError(
            p,
            f"{what} {'are' if what.endswith('s') else 'is'} only {width}x{height} pixels: too small to show "
            f"anything (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} is needed)",
        )


def _not_an_image(p: Path) -> str:
    """Why PIL could not open ``p``, in words: what the file is instead (audio, video, a vector drawing), when
    FFmpeg recognises it."""
    try:
        with _open_av(p) as container:
            name = container.format.name
            if _is_image_container(container):
                kind = name.removesuffix("_pipe").upper()
                if kind == "SVG":
                    return "an SVG drawing (vector graphics) is not supported: give a PNG, JPEG or WebP picture"
                return f"a {kind} picture cannot be read here: give a PNG, JPEG or WebP picture"
            kind = "video" if _video_stream(container) is not None else "audio" if container.streams.audio else ""
    except DecodeError:
        kind = ""
    if kind:
        return f"not an image: it is {kind} (give it as the {kind} input)"
    return "not an image, or an image format that cannot be read (give a PNG, JPEG or WebP picture)"


# ----------------------------------------------------------------------------- PyAV helpers
def _open_av(p: Path) -> Any:
    """An open PyAV input container, or DecodeError."""
    import av

    try:
        container = av.open(str(p), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(p, f"not a recognised audio or video file ({getattr(e, 'strerror', None) or e})") from None
    name = container.format.name
    if name in _PLAYLIST_FORMATS | _NAME_ONLY_FORMATS:
        container.close()
        why = "playlists are refused" if name in _PLAYLIST_FORMATS else f"FFmpeg only guessed {name!r} from its name"
        raise DecodeError(p, f"not a recognised audio or video file ({why})")
    return container


def _check_streams(p: Path, container: Any) -> None:
    """DecodeError when FFmpeg recognised the container but could read no stream from it: its index is
    missing or damaged (for MP4/MOV, the ``moov`` atom), which is not the same as a file without video."""
    if len(container.streams) == 0:
        where = " (the MP4/MOV index, its 'moov' atom, is damaged)" if container.format.name.startswith("mov") else ""
        raise DecodeError(p, f"no audio or video stream could be read: the file is corrupt or incomplete{where}")


def _is_image_container(container: Any) -> bool:
    return container.format.name.endswith("_pipe")


def _video_stream(container: Any) -> Any | None:
    """First real video stream (cover art of audio files excluded), or None."""
    import av

    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    """Decoded frames of one stream, packet by packet, skipping corrupt packets; stops at unreadable data."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:
            return  # unreadable (e.g. truncated) rest of the file
        try:
            yield from packet.decode()
        except av.error.FFmpegError:
            continue  # one corrupt packet: skip it, as players do


# ----------------------------------------------------------------------------- audio
def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
    window: float | None = None,
) -> Audio:
    """Mono float32 [N] audio from any common file (soundfile first, then PyAV; a video gives its soundtrack),
    resampled to `sample_rate` if given. A file longer than max_seconds raises DecodeError (the cap applies
    to the whole file, whatever the window). ``window`` (seconds): decode only that much, centred in the
    audio (when the audio is longer than window + WINDOW_SLACK_S); None decodes all of it."""
    p = _check_file(path)
    _check_wav_header(p)
    decoded = _read_soundfile(p, max_seconds, window)
    if decoded is None:
        with _open_av(p) as container:
            _check_streams(p, container)
            if not container.streams.audio:
                what = "an image" if _is_image_container(container) else "video only" if container.streams.video else ""
                raise DecodeError(p, "has no audio stream" + (f" ({what})" if what else ""))
            decoded = _decode_av_stream(p, container, container.streams.audio[0], max_seconds, window)
    samples, rate = decoded
    _check_samples(p, "audio", samples, rate)
    return Audio(resample(samples, rate, sample_rate), sample_rate or rate)


def _check_samples(p: Path, what: str, samples: np.ndarray, rate: int) -> None:
    """Refuse degenerate decoded audio with a DecodeError saying what is wrong: no samples, NaN or infinite
    samples (a float WAV can hold them; encoders would turn them into NaN scores), or too short to hear."""
    if samples.size == 0:
        raise DecodeError(p, f"{what} decodes to 0 samples")
    if not np.isfinite(samples).all():
        raise DecodeError(p, f"{what} contains NaN or infinite samples (a corrupt file): it cannot be used")
    if samples.size < MIN_AUDIO_SECONDS * rate:
        raise DecodeError(
            p,
            f"{what} is only {samples.size} sample{'s' if samples.size != 1 else ''} ({samples.size / rate:.4f}s) "
            "long: too short to hear "
            f"anything (at least {MIN_AUDIO_SECONDS:g}s is needed)",
        )


def _check_wav_header(p: Path) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk announces more than twice the bytes the file holds (and at
    least 1 MB more): a forged or badly truncated header. The sizes 0 and 0xFFFFFFFF mean "unknown" (files
    written to a pipe) and pass."""
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos, total = 12, p.stat().st_size
    while pos + 8 <= len(head):
        kind, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if kind == b"data":
            held = total - pos - 8
            if size not in (0, 0xFFFFFFFF) and size > 2 * held and size - held > 2**20:
                raise DecodeError(
                    p,
                    f"the WAV header announces {_human(size)} of audio but the file holds {_human(held)}: "
                    "a truncated or forged file",
                )
            return
        pos += 8 + size + (size & 1)


def _human(n: int) -> str:
    """A byte count in words: 512 bytes, 1.5 KB, 2048.0 MB."""
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def _decode_av_stream(
    p: Path, container: Any, stream: Any, max_seconds: float | None, window: float | None
) -> tuple[np.ndarray, int]:
    """(mono float32 [N], native rate) of an audio stream: its centred ``window`` seconds found by seeking
    when the stream is known to be longer than window + WINDOW_SLACK_S, else all of it."""
    span = _audio_span(container, stream)
    if span is not None:
        _too_long(p, "audio", span[1], max_seconds)
    if window is not None and span is not None and span[1] > window + WINDOW_SLACK_S:
        return _decode_av_window(container, stream, span[0] + (span[1] - window) / 2, window)
    return _decode_av_audio(p, container, stream, max_seconds)


def _too_long(p: Path, kind: str, seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise DecodeError(p, f"{kind} is {seconds:.1f}s long, the limit is {max_seconds:g}s")


def _read_soundfile(p: Path, max_seconds: float | None, window: float | None) -> tuple[np.ndarray, int] | None:
    """(mono float32 [N], rate) through libsndfile (the centred ``window`` seconds of a longer file), or None
    when libsndfile cannot read the file."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(p)) as f:  # one open: header, then the (windowed) samples
            _too_long(p, "audio", f.frames / f.samplerate, max_seconds)
            if window is not None and f.frames > (window + WINDOW_SLACK_S) * f.samplerate:
                f.seek((f.frames - int(round(window * f.samplerate))) // 2)
                data = f.read(int(round(window * f.samplerate)), dtype="float32", always_2d=True)
            else:
                data = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return data.mean(axis=1, dtype=np.float32), int(rate)


def _decode_av_audio(p: Path, container: Any, stream: Any, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """(mono float32 [N], native rate) of one audio stream, skipping corrupt packets."""
    import av

    if stream.duration and stream.time_base:
        _too_long(p, "audio", float(stream.duration * stream.time_base), max_seconds)
    elif container.duration and container.duration > 0:
        _too_long(p, "audio", container.duration / av.time_base, max_seconds)
    resampler = av.AudioResampler(format="fltp")  # keeps layout and rate of the first frame
    chunks: list[np.ndarray] = []
    rate, total = 0, 0
    try:
        for frame in chain(_frames(container, stream), [None]):  # None flushes the resampler
            for out in resampler.resample(frame):
                rate = rate or out.sample_rate
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
                total += chunks[-1].size
            if rate and max_seconds is not None and total / rate > max_seconds:  # no usable metadata
                raise DecodeError(p, f"audio is at least {total / rate:.1f}s long, the limit is {max_seconds:g}s")
    except (av.error.FFmpegError, ValueError) as e:
        if not chunks:
            raise DecodeError(p, f"audio stream cannot be decoded ({e})") from None
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), rate or stream.rate or 1


def resample(samples: np.ndarray, rate: int, target: int | None) -> np.ndarray:
    """The one resampler of the library: float32 [N] at `rate` -> float32 [M] at `target`, M ~ N * target / rate
    (unchanged if target is None or equal). Band-limited sinc (torchaudio's kernel, cached per pair of rates)
    for ordinary rate pairs; FFT for arbitrary ratios (e.g. a speed change), where a polyphase kernel would
    be huge."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not target or target == rate or samples.size == 0:
        return samples
    g = math.gcd(int(rate), int(target))
    if max(rate, target) // g > _MAX_POLYPHASE:
        n_out = max(1, round(samples.size * target / rate))
        spec = np.fft.rfft(samples)
        out = np.fft.irfft(spec[: min(len(spec), n_out // 2 + 1)], n_out) * (n_out / samples.size)
        return out.astype(np.float32)
    kernel, width, step = _resampler(int(rate), int(target))  # kernel (n, K): n outputs per `step` inputs
    padded = np.zeros(samples.size + 2 * width + step, dtype=np.float32)  # np.pad's zeros, without its checks
    padded[width : width + samples.size] = samples
    k = kernel.shape[1]
    rows = (padded.size - k) // step + 1  # sliding_window_view(padded, k)[::step], as one strided view
    windows = as_strided(padded, (rows, k), (step * padded.itemsize, padded.itemsize), writeable=False)  # (T, K)
    out = (windows @ kernel.T).reshape(-1)  # (T * n,)
    return np.ascontiguousarray(out[: math.ceil(kernel.shape[0] * samples.size / step)])


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, target: int) -> tuple[np.ndarray, int, int]:
    """torchaudio's band-limited sinc kernel for one pair of rates (computed once, not per file), applied by
    ``resample`` as torchaudio.functional.resample does (same output up to float rounding) but in numpy: a
    strided convolution there runs ~10x slower on a busy CPU, where torch's intra-op threads contend.
    Returns (kernel ``float32 (n, K)``, padding width, input step)."""
    import torchaudio.transforms as AT

    t = AT.Resample(rate, target)
    return t.kernel[:, 0, :].numpy().astype(np.float32), int(t.width), rate // math.gcd(rate, target)


# ----------------------------------------------------------------------------- video
def load_video(
    path: str | os.PathLike,
    num_frames: int = 8,
    audio_sample_rate: int | None = 16000,
    max_seconds: float | None = None,
    audio_window: float | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
) -> VideoClip:
    """K=num_frames RGB frames at the centres of K equal slices of the video, found by seeking
    (never decoding the whole file), plus the mono soundtrack at audio_sample_rate (None if absent).
    ``audio_window`` (seconds): decode only that much of the soundtrack, centred in it (by seeking),
    for encoders that look at a centred window anyway; None decodes all of it, 0 none of it.
    ``max_pixels``: frames over this many pixels are refused (DecodeError), as images are; ``max_side``:
    frames are scaled down while converting (FFmpeg's area filter) so their longer side is at most this
    (a 4K clip then costs ~100 KB per frame, not 25 MB); None keeps the full size."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    p = _check_file(path)
    with _open_av(p) as container:
        stream = _checked_video_stream(p, container, max_pixels)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        duration = _video_duration(container, stream, start)
        _too_long(p, "video", duration, max_seconds)
        fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        frames, times = [], []
        with _KeyframeProbe(p) as probe:
            at = None  # time of the last frame decoded (the decoder's position), None before the first
            for i in range(num_frames):
                target = start + (i + 0.5) * duration / num_frames
                frame = _next_frame_at(p, container, stream, target, fps, at, probe)
                at = frame.time
                _check_size(p, "video frames", frame.width, frame.height, max_pixels)  # the header may lie
                frames.append(frame.to_image(**_fit(frame.width, frame.height, max_side)))
                times.append((frame.time if frame.time is not None else target) - start)
        has_audio = bool(container.streams.audio)
    audio = _soundtrack(p, audio_sample_rate, audio_window) if has_audio and audio_window != 0 else None
    return VideoClip(frames, times, audio, duration, fps)


def _checked_video_stream(p: Path, container: Any, max_pixels: int | None) -> Any:
    """The video stream of an open container, or DecodeError saying why there is none usable (an image, an
    audio-only file, a damaged index, frames over the pixel cap or too small)."""
    if _is_image_container(container):
        raise DecodeError(p, f"is an image ({container.format.name.removesuffix('_pipe')}), not a video")
    _check_streams(p, container)
    stream = _video_stream(container)
    if stream is None:
        only = " (audio only: give it as the audio input)" if container.streams.audio else ""
        raise DecodeError(p, "has no video stream" + only)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width and height:
        _check_size(p, "video frames", width, height, max_pixels)
    return stream


def _fit(width: int, height: int, max_side: int | None) -> dict[str, Any]:
    """``to_image`` arguments that scale width x height down to at most ``max_side`` on the longer side."""
    if max_side is None or max(width, height) <= max_side:
        return {}
    scale = max_side / max(width, height)
    return {
        "width": max(1, round(width * scale)),
        "height": max(1, round(height * scale)),
        "interpolation": "AREA",
    }


def _video_duration(container: Any, stream: Any, start: float) -> float:
    """Seconds from metadata (stream, then container); else by demuxing packets (no decoding)."""
    import av

    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:  # counted from the container's start
        late_start = start - (container.start_time or 0) / av.time_base
        return container.duration / av.time_base - max(late_start, 0.0)
    end = start
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end - start


class _KeyframeProbe:
    """A second handle on a video file that tells, without decoding, which keyframe a seek to a time lands on
    (the first packet the demuxer gives after that seek), so that :func:`load_video` decodes forward instead of
    seeking back to a keyframe it has already decoded past. A clip with one keyframe every 10 s (x264's default
    for 25 fps) otherwise decodes from its start again for each of its K frames."""

    def __init__(self, p: Path) -> None:
        self.p, self.container = p, None

    def __enter__(self) -> _KeyframeProbe:
        import av

        try:
            self.container = av.open(str(self.p), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, ValueError):
            self.container = None  # no probe: every frame is found by seeking, as before
        return self

    def __exit__(self, *exc: object) -> None:
        if self.container is not None:
            self.container.close()

    def keyframe_time(self, target: float) -> float | None:
        """Seconds of the keyframe a seek to ``target`` reaches; None when unknown (no probe, no timestamps)."""
        import av

        if self.container is None:
            return None
        stream = _video_stream(self.container)
        if stream is None or not stream.time_base:
            return None
        try:
            self.container.seek(int(target / float(stream.time_base)), stream=stream)
            for packet in self.container.demux(stream):
                if packet.pts is not None and packet.time_base is not None:
                    return float(packet.pts * packet.time_base)
                if packet.size:  # a packet without a timestamp: cannot tell
                    return None
        except (av.error.FFmpegError, StopIteration):
            return None
        return None


def _next_frame_at(
    p: Path, container: Any, stream: Any, target: float, fps: float | None, at: float | None, probe: _KeyframeProbe
) -> Any:
    """The first frame at/after ``target``: decoded forward from the decoder's position ``at`` when the keyframe
    a seek would reach is not after it (the same frames a seek gives, with less decoding), else by seeking."""
    if at is not None and target > at:
        key = probe.keyframe_time(target)
        if key is not None and key <= at:
            try:
                return _frame_at(p, container, stream, target, fps, seek=False)
            except DecodeError:
                pass  # the stream ended on the way: seek, as for any other frame
    return _frame_at(p, container, stream, target, fps)


def _frame_at(p: Path, container: Any, stream: Any, target: float, fps: float | None, seek: bool = True) -> Any:
    """Seek to the keyframe before `target` (seconds) and decode forward to the first frame at/after it
    (``seek=False``: decode forward from where the decoder is)."""
    import av

    try:
        if seek:
            container.seek(int(target / float(stream.time_base)), stream=stream)
    except av.error.FFmpegError:
        pass  # unseekable: decode forward from where we are
    last = None
    for frame in _frames(container, stream):
        if frame.time is None or frame.time >= target - 1e-6:
            return frame
        last = frame
    # end of stream: the last frame is shown at `target` if it is close enough
    if last is not None and target - last.time <= max(0.5, 2.0 / (fps or 1.0)):
        return last
    where = f"after {last.time:.2f}s" if last is not None else "at all"
    raise DecodeError(p, f"no video frame could be decoded near {target:.2f}s ({where}; truncated or corrupt file?)")


def _soundtrack(p: Path, sample_rate: int | None, window: float | None = None) -> Audio | None:
    """The mono soundtrack of a video file (or its centred ``window`` seconds), or None (logged) if it
    decodes to nothing."""
    with _open_av(p) as container:
        try:
            samples, rate = _decode_av_stream(p, container, container.streams.audio[0], None, window)
        except DecodeError as e:
            samples, rate = np.zeros(0, np.float32), 0
            log.warning("%s", e)
    if samples.size < MIN_AUDIO_SECONDS * max(rate, 1):
        log.warning("%s: the audio stream decodes to %d samples (too short); returning audio=None", p, samples.size)
        return None
    _check_samples(p, "the soundtrack", samples, rate)  # NaN or infinite samples are refused
    return Audio(resample(samples, rate, sample_rate), sample_rate or rate)


def _audio_span(container: Any, stream: Any) -> tuple[float, float] | None:
    """(start, duration) in seconds of an audio stream from metadata, or None if unknown."""
    import av

    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    if stream.duration and stream.time_base:
        return start, float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return start, container.duration / av.time_base - start
    return None


def _decode_av_window(container: Any, stream: Any, t0: float, seconds: float) -> tuple[np.ndarray, int]:
    """Mono float32 samples of [t0, t0 + seconds) found by seeking; corrupt packets are skipped."""
    import av

    try:
        container.seek(int(t0 / float(stream.time_base)), stream=stream)
    except av.error.FFmpegError:
        pass
    resampler = av.AudioResampler(format="fltp")
    chunks: list[np.ndarray] = []
    rate, first = 0, None
    for frame in chain(_frames(container, stream), [None]):
        if frame is not None and frame.time is not None and frame.time >= t0 + seconds:
            frame = None  # past the window: flush and stop
        for out in resampler.resample(frame):
            rate = rate or out.sample_rate
            first = out.time if first is None and out.time is not None else first
            chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        if frame is None:
            break
    if not chunks:
        return np.zeros(0, np.float32), rate or stream.rate or 1
    samples = np.concatenate(chunks)
    skip = max(0, int(round((t0 - (first if first is not None else t0)) * rate)))
    return samples[skip : skip + int(round(seconds * rate))], rate


# ----------------------------------------------------------------------------- probing
def probe_kind(path: str | os.PathLike) -> str:
    """'image' | 'audio' | 'video' from the file's content (not its name); DecodeError if none fits."""
    p = _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                if im.format != "MPEG":  # PIL "identifies" MPEG-1 video but cannot decode it
                    return "image"
    except Image.DecompressionBombError:
        return "image"
    except Exception:  # any PIL failure just means "not an image PIL reads"
        pass
    with _open_av(p) as container:
        _check_streams(p, container)
        if _is_image_container(container):
            return "image"
        if _video_stream(container) is not None:
            return "video"
        if container.streams.audio:
            return "audio"
    raise DecodeError(p, "contains no image, audio or video stream")
