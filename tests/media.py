"""Generators of real media files for tests (PIL, soundfile, PyAV), plus small analysis helpers.

Usage from any test: ``from tests.media import make_video, make_tone_file, second_level``.
Every generator writes a real, playable file and returns its path.
"""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np

SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
VIDEO_CODECS = {".mp4": "h264", ".mkv": "h264", ".webm": "libvpx", ".avi": "mpeg4", ".mov": "mpeg4"}
AUDIO_CODECS = {
    ".mp4": "aac",
    ".m4a": "aac",
    ".mkv": "aac",
    ".mov": "aac",
    ".webm": "libopus",
    ".opus": "libopus",
    ".avi": "ac3",
    ".mka": "flac",
}


def tone(
    freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1, amplitude: float = 0.5
) -> np.ndarray:
    """Sine tone, float32 [N, channels] (channel c is scaled by 1/(c+1) so channels differ)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    return np.stack([wave / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the largest FFT peak of a mono signal [N]."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / sample_rate)[int(np.argmax(spectrum))])


def make_tone_file(
    path: str | Path, freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1
) -> Path:
    """Write a sine tone: wav/flac/ogg/mp3 through soundfile, m4a/webm/opus/mka through PyAV."""
    path = Path(path)
    data = tone(freq, seconds, sample_rate, channels)
    fmt = SOUNDFILE_FORMATS.get(path.suffix.lower())
    if fmt is not None:
        import soundfile as sf

        sf.write(str(path), data, sample_rate, format=fmt)
        return path
    import av

    with av.open(str(path), "w") as out:
        _write_audio(out, AUDIO_CODECS[path.suffix.lower()], data, sample_rate)
    return path


make_tone_wav = make_tone_file


def second_level(second: int) -> int:
    """Gray level of every frame during `second` in make_video (neighbouring seconds differ by >= 37)."""
    return 28 + (37 * int(second)) % 200


def make_video(
    path: str | Path,
    seconds: float = 4.0,
    with_audio: bool = True,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    video_codec: str | None = None,
    audio_codec: str | None = None,
    tone_hz: float = 440.0,
    sample_rate: int | None = None,
    channels: int = 2,
    gop: int | None = None,
    live: bool = False,
) -> Path:
    """Write a video whose frames during second s are flat gray `second_level(s)`, with an optional
    sine soundtrack (tone_hz). Codecs default from the extension: mp4 h264+aac, webm vp8+opus, avi mpeg4+ac3.
    live=True (webm/mkv) writes no duration and no cues, like a browser's MediaRecorder."""
    import av

    path = Path(path)
    ext = path.suffix.lower()
    width, height = size
    with av.open(str(path), "w", options={"live": "1"} if live else None) as out:
        vstream = out.add_stream(video_codec or VIDEO_CODECS[ext], rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            vstream.codec_context.gop_size = gop
        astream = None
        if with_audio:
            codec = audio_codec or AUDIO_CODECS[ext]
            sample_rate = sample_rate or (48000 if "opus" in codec else 44100)
            astream = _add_audio_stream(out, codec, sample_rate, channels)
        for i in range(int(round(seconds * fps))):
            rgb = np.full((height, width, 3), second_level(i // fps), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        if astream is not None:
            _encode_audio(out, astream, tone(tone_hz, seconds, sample_rate, channels), sample_rate)
    return path


def make_cover_art_mp3(path: str | Path, freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 44100) -> Path:
    """An mp3 tone with embedded cover art: FFmpeg shows the picture as a video stream (attached_pic)."""
    import io

    import av
    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(jpeg, "JPEG")
    with av.open(str(path), "w") as out:
        audio = _add_audio_stream(out, "libmp3lame", sample_rate, 1)
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(jpeg.getvalue())
        packet.stream, packet.pts, packet.dts = cover, 0, 0
        out.mux(packet)
        _encode_audio(out, audio, tone(freq, seconds, sample_rate, 1), sample_rate)
    return Path(path)


def make_png_bomb(path: str | Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 1-bit grayscale PNG of width x height pixels, all black, tiny on disk (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return Path(path)


def truncate_copy(src: str | Path, dst: str | Path, size: int | float) -> Path:
    """Copy the first `size` bytes of src (an int), or that fraction of it (a float < 1), to dst."""
    data = Path(src).read_bytes()
    n = int(len(data) * size) if isinstance(size, float) else int(size)
    Path(dst).write_bytes(data[:n])
    return Path(dst)


def corrupt_packet(src: str | Path, dst: str | Path, kind: str = "audio", number: int = 10) -> Path:
    """Remux src to dst (same container, no re-encoding), replacing the payload of the `number`-th
    packet of the first `kind` stream ("audio"/"video") with garbage of the same size."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        seen = 0
        for packet in inp.demux():
            if packet.dts is None:
                continue
            index = packet.stream.index
            if packet.stream.type == kind and index == inp.streams.get(**{kind: 0})[0].index:
                seen += 1
                if seen == number:
                    bad = av.Packet(bytes(range(256)) * (packet.size // 256 + 1))
                    bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                    packet = bad
            packet.stream = streams[index]
            out.mux(packet)
    return Path(dst)


def _add_audio_stream(out, codec: str, sample_rate: int, channels: int):
    stream = out.add_stream(codec, rate=sample_rate)
    stream.layout = "stereo" if channels == 2 else "mono"
    return stream


def _write_audio(out, codec: str, data: np.ndarray, sample_rate: int) -> None:
    stream = _add_audio_stream(out, codec, sample_rate, data.shape[1])
    _encode_audio(out, stream, data, sample_rate)


def _encode_audio(out, stream, data: np.ndarray, sample_rate: int, chunk: int = 1024) -> None:
    """Encode float32 [N, C] in chunks; PyAV's encoder re-frames them to the codec's frame size."""
    import av

    layout = "stereo" if data.shape[1] == 2 else "mono"
    for start in range(0, len(data), chunk):
        planar = np.ascontiguousarray(data[start : start + chunk].T)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


# ----------------------------------------------------------------------------- odd files (tests/corpus)
def make_wav(path: str | Path, data: np.ndarray, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    """Write float32 samples [N] or [N, C] as a WAV of the given soundfile ``subtype`` (PCM_U8, PCM_24, FLOAT...)."""
    import soundfile as sf

    sf.write(str(path), data, sample_rate, subtype=subtype, format="WAV")
    return Path(path)


def make_lying_wav(path: str | Path, held_bytes: int = 1024, claimed_bytes: int = 2**31) -> Path:
    """A 16-bit WAV holding ``held_bytes`` of samples whose header announces ``claimed_bytes`` (a forged size)."""
    samples = (0.1 * np.sin(np.arange(held_bytes // 2) / 3)).astype(np.float32)
    make_wav(path, samples)
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", claimed_bytes)
    data[4:8] = struct.pack("<I", min(claimed_bytes + at, 2**32 - 1))
    Path(path).write_bytes(bytes(data))
    return Path(path)


def make_moving_video(
    path: str | Path, seconds: float = 3.0, size: tuple[int, int] = (3840, 2160), fps: int = 5, seed: int = 0
) -> Path:
    """A small h264 mp4 of flat colours with a square moving across it; ``seed`` picks the colours and the path,
    so clips with different seeds differ in content (distinct cache keys). Large sizes encode fast (ultrafast)."""
    import av

    rng = np.random.default_rng(seed)
    back, square = rng.integers(0, 256, 3, dtype=np.uint8), rng.integers(0, 256, 3, dtype=np.uint8)
    width, height = size
    side = max(8, height // 4)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast"}
        n = max(1, int(round(seconds * fps)))
        for i in range(n):
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[:] = back
            x = int((width - side) * i / max(1, n - 1))
            rgb[(height - side) // 2 : (height + side) // 2, x : x + side] = square
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return Path(path)


def make_sparse_video(path: str | Path, seconds: float, frame_every: float = 60.0, size: int = 32) -> Path:
    """A long video made cheaply: one frame every ``frame_every`` seconds (a 2-hour clip is 120 frames, 10 KB)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=Fraction(1, int(frame_every)))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(max(1, int(seconds // frame_every))):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), (37 * i) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(int(frame_every), 1)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return Path(path)


def make_two_soundtrack_video(path: str | Path, seconds: float = 2.0, tones: tuple[float, float] = (440, 880)) -> Path:
    """An mp4 (h264) with two aac audio streams: ``tones[0]`` Hz in the first, ``tones[1]`` Hz in the second."""
    import av

    fps, (width, height), rate = 10, (64, 48), 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("h264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audios = [_add_audio_stream(out, "aac", rate, 1) for _ in tones]
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), second_level(i // fps), np.uint8))
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for stream, hz in zip(audios, tones):
            _encode_audio(out, stream, tone(hz, seconds, rate, 1), rate)
    return Path(path)


def damage_moov(src: str | Path, dst: str | Path) -> Path:
    """Copy an mp4 with the inside of its ``moov`` atom (the index of its streams) overwritten: FFmpeg still
    recognises the container but reads no stream."""
    data = bytearray(Path(src).read_bytes())
    at = data.find(b"moov")
    if at < 0:
        raise ValueError(f"{src} has no moov atom")
    data[at + 8 : at + 200] = b"\xff" * len(data[at + 8 : at + 200])
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def make_nan_soundtrack_video(path: str | Path, seconds: float = 1.0) -> Path:
    """A .mov (h264 + float PCM) whose soundtrack holds NaN samples: valid to FFmpeg, poison to an encoder."""
    import av

    fps, rate = 10, 16000
    with av.open(str(path), "w") as out:
        video = out.add_stream("h264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("pcm_f32le", rate=rate)
        audio.layout = "mono"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), second_level(i // fps), np.uint8))
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = tone(440, seconds, rate, 1)[:, 0]
        samples[::3] = np.nan
        chunk = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = rate, 0, Fraction(1, rate)
        out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))
    return Path(path)
