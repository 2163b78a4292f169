"""Tests of ume_mma.io on real files generated at test time (PIL, soundfile, PyAV) and on Debian's Megamind.avi."""

from __future__ import annotations

import math
import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.media import (
    corrupt_packet,
    dominant_frequency,
    make_cover_art_mp3,
    make_png_bomb,
    make_tone_file,
    make_video,
    second_level,
    truncate_copy,
)
from ume_mma import io
from ume_mma.errors import DecodeError
from ume_mma.io import MAX_IMAGE_PIXELS, Audio, VideoClip, load_audio, load_image, load_video, probe_kind, resample

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
MEGAMIND_BUGGY = Path("/usr/share/doc/opencv-doc/examples/data/Megamind_bugy.avi")
TONE_FILES = ["tone.wav", "tone.flac", "tone.ogg", "tone.mp3", "tone.m4a", "tone.webm", "tone.opus"]
VIDEOS = ["av.mp4", "av.webm", "av.avi", "av.mkv"]  # h264+aac, vp8+opus, mpeg4+ac3, h264+aac


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of real media files, generated once for the whole session."""
    d = tmp_path_factory.mktemp("media")
    Image.new("RGB", (40, 30), (200, 30, 60)).save(d / "red.png")
    Image.new("RGB", (40, 30), (20, 90, 220)).save(d / "blue.jpg", quality=95)
    for name in TONE_FILES:
        make_tone_file(d / name, 440.0, 1.0, 48000 if name.endswith((".webm", ".opus")) else 16000)
    make_tone_file(d / "stereo.wav", 440.0, 1.0, 16000, channels=2)
    make_cover_art_mp3(d / "cover.mp3")
    for name in VIDEOS:
        make_video(d / name, seconds=4.0)
    make_video(d / "silent.mp4", seconds=4.0, with_audio=False)
    make_video(d / "live.webm", seconds=4.0, live=True)
    make_video(d / "long.mp4", seconds=60.0, with_audio=False, size=(32, 32), gop=20)
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.txt").write_text("this is not a media file\n" * 20)
    for ext in ("wav", "png", "mp4"):
        (d / f"text.{ext}").write_bytes((d / "text.txt").read_bytes())
    truncate_copy(d / "av.mp4", d / "half.mp4", 0.5)
    truncate_copy(d / "av.mp4", d / "1k.mp4", 1024)
    truncate_copy(d / "av.webm", d / "half.webm", 0.5)
    truncate_copy(d / "red.png", d / "half.png", 0.6)
    sf.write(d / "zero.wav", np.zeros((0, 1), np.float32), 16000)
    return d


def expect_error(fn, path: Path, pattern: str, **kwargs) -> DecodeError:
    """fn(path) raises DecodeError naming the path, whose problem matches `pattern`."""
    with pytest.raises(DecodeError) as info:
        fn(path, **kwargs)
    assert str(info.value).startswith(f"{path}: ")
    assert re.search(pattern, info.value.problem), info.value.problem
    return info.value


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize("name, colour", [("red.png", (200, 30, 60)), ("blue.jpg", (20, 90, 220))])
def test_load_image_png_jpg(media: Path, name: str, colour: tuple[int, int, int]) -> None:
    im = load_image(media / name)
    assert im.mode == "RGB" and im.size == (40, 30)
    assert np.abs(np.asarray(im, np.int16) - colour).max() <= 4


def test_load_image_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red left half, fully transparent right half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr = np.asarray(load_image(tmp_path / "a.png"))
    assert arr.shape == (10, 20, 3)
    assert (arr[:, :10] == (255, 0, 0)).all() and (arr[:, 10:] == 255).all()


def test_load_image_palette_gray_and_16bit(tmp_path: Path) -> None:
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(tmp_path / "p.png", transparency=0)
    assert load_image(tmp_path / "p.png").getpixel((0, 0)) == (0, 255, 0)
    Image.new("L", (8, 8), 100).save(tmp_path / "l.png")
    assert load_image(tmp_path / "l.png").getpixel((3, 3)) == (100, 100, 100)
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "i16.png")
    assert load_image(tmp_path / "i16.png").getpixel((3, 3)) == (255, 255, 255)


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_load_image_limits_pixels(tmp_path: Path, media: Path) -> None:
    err = expect_error(
        load_image, media / "red.png", r"^image has 1200 pixels, more than the limit 1000$", max_pixels=1000
    )
    assert err.path == str(media / "red.png")
    make_png_bomb(tmp_path / "64M.png", 8000, 8000)  # above our default, below PIL's own limit
    expect_error(
        load_image, tmp_path / "64M.png", rf"image has 64000000 pixels, more than the limit {MAX_IMAGE_PIXELS}"
    )


def test_load_image_refuses_decompression_bomb(tmp_path: Path) -> None:
    bomb = make_png_bomb(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 200_000
    expect_error(load_image, bomb, r"image has 400000000 pixels, more than the limit \d+")
    assert probe_kind(bomb) == "image"


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("empty.mp4", r"file is empty \(0 bytes\)"),
        ("missing.png", "file does not exist"),
        ("half.png", r"^image cannot be decoded: the file is truncated or corrupt \(image file is truncated"),
        ("text.png", "not an image"),
        ("tone.wav", r"^not an image: it is audio \(give it as the audio input\)$"),
        ("av.mp4", r"^not an image: it is video \(give it as the video input\)$"),
    ],
)
def test_load_image_errors(media: Path, name: str, pattern: str) -> None:
    expect_error(load_image, media / name, pattern)


def test_load_image_directory(media: Path) -> None:
    expect_error(load_image, media, "not a regular file")


# ----------------------------------------------------------------------------- audio
@pytest.mark.parametrize("name", TONE_FILES)
def test_load_audio_formats(media: Path, name: str) -> None:
    audio = load_audio(media / name)
    assert isinstance(audio, Audio) and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.sample_rate == (48000 if name.endswith((".webm", ".opus")) else 16000)
    assert abs(audio.duration - 1.0) < 0.06  # aac adds up to one 1024-sample frame of padding
    assert abs(dominant_frequency(audio.samples, audio.sample_rate) - 440) < 3
    assert 0.3 < np.abs(audio.samples).max() <= 1.0


@pytest.mark.parametrize("rate", [8000, 22050])
def test_load_audio_resamples(media: Path, rate: int) -> None:
    for name in ("tone.wav", "tone.webm"):  # soundfile path and PyAV path
        audio = load_audio(media / name, sample_rate=rate)
        assert audio.sample_rate == rate and audio.samples.dtype == np.float32
        assert abs(len(audio.samples) - rate) <= 2
        assert abs(dominant_frequency(audio.samples, rate) - 440) < 3


def test_load_audio_downmixes_stereo_to_mono(media: Path) -> None:
    audio = load_audio(media / "stereo.wav")  # channels of amplitude 0.5 and 0.25
    assert audio.samples.shape == (16000,)
    assert abs(np.abs(audio.samples).max() - 0.375) < 0.01


@pytest.mark.parametrize("name", VIDEOS)
def test_load_audio_of_video_is_its_soundtrack(media: Path, name: str) -> None:
    audio = load_audio(media / name, sample_rate=16000)
    assert audio.sample_rate == 16000 and abs(audio.duration - 4.0) < 0.1
    assert abs(dominant_frequency(audio.samples, 16000) - 440) < 3


def test_load_audio_mp3_with_cover_art(media: Path) -> None:
    audio = load_audio(media / "cover.mp3")
    assert abs(dominant_frequency(audio.samples, audio.sample_rate) - 440) < 3
    assert probe_kind(media / "cover.mp3") == "audio"
    expect_error(load_video, media / "cover.mp3", r"has no video stream \(audio only: give it as the audio input\)")


def test_load_audio_max_seconds(media: Path) -> None:
    expect_error(load_audio, media / "tone.wav", r"^audio is 1\.0s long, the limit is 0\.5s$", max_seconds=0.5)
    expect_error(load_audio, media / "tone.webm", r"^audio is 1\.0s long, the limit is 0\.5s$", max_seconds=0.5)
    assert load_audio(media / "tone.wav", max_seconds=2).duration == 1.0
    # no duration in the file: decoding stops as soon as the limit is passed
    expect_error(load_audio, media / "live.webm", r"^audio is at least 1\.0s long, the limit is 1s$", max_seconds=1)


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("silent.mp4", r"has no audio stream \(video only\)"),
        ("red.png", r"has no audio stream \(an image\)"),
        ("zero.wav", "audio decodes to 0 samples"),
        ("text.wav", "not a recognised audio or video file"),
        ("empty.mp4", r"file is empty \(0 bytes\)"),
        ("missing.wav", "file does not exist"),
        ("half.mp4", "not a recognised audio or video file"),
        ("1k.mp4", "not a recognised audio or video file"),
    ],
)
def test_load_audio_errors(media: Path, name: str, pattern: str) -> None:
    expect_error(load_audio, media / name, pattern)


# ----------------------------------------------------------------------------- video
def check_frames(clip: VideoClip, num_frames: int, fps: float = 10.0) -> None:
    """Frame k is the first frame at/after the centre of slice k (or the last frame, still shown there)
    and shows the gray level of its second."""
    assert len(clip.frames) == len(clip.frame_times) == num_frames
    last = clip.duration - 1.0 / fps
    for k, (frame, t) in enumerate(zip(clip.frames, clip.frame_times)):
        target = (k + 0.5) * clip.duration / num_frames
        if target <= last + 1e-6:
            assert target - 1e-6 <= t < target + 1.0 / fps + 1e-6, (k, t, target)
        else:
            assert t == pytest.approx(last, abs=1e-3), (k, t, target)
        assert frame.mode == "RGB"
        gray = np.asarray(frame, np.float32).mean()
        assert abs(gray - second_level(math.floor(t + 1e-6))) < 8, (k, t, gray)


@pytest.mark.parametrize("name", VIDEOS)
def test_load_video_frames_and_audio(media: Path, name: str) -> None:
    clip = load_video(media / name, num_frames=8)
    assert abs(clip.duration - 4.0) < 0.05 and clip.fps == pytest.approx(10.0)
    assert all(f.size == (64, 48) for f in clip.frames)
    check_frames(clip, 8)
    assert clip.audio is not None and clip.audio.sample_rate == 16000
    assert clip.audio.samples.dtype == np.float32 and clip.audio.samples.ndim == 1
    assert abs(clip.audio.duration - 4.0) < 0.1
    assert abs(dominant_frequency(clip.audio.samples, 16000) - 440) < 3


def test_load_video_without_sound(media: Path) -> None:
    clip = load_video(media / "silent.mp4", num_frames=4, audio_sample_rate=None)
    assert clip.audio is None
    check_frames(clip, 4)
    expect_error(load_audio, media / "silent.mp4", "has no audio stream")


def test_load_video_native_audio_rate_and_one_frame(media: Path) -> None:
    clip = load_video(media / "av.webm", num_frames=1, audio_sample_rate=None)
    assert clip.audio is not None and clip.audio.sample_rate == 48000
    check_frames(clip, 1)
    assert clip.frame_times[0] == pytest.approx(2.0, abs=0.11)


def test_load_video_more_frames_than_the_video_has(media: Path) -> None:
    clip = load_video(media / "silent.mp4", num_frames=50)  # 40 frames in the file
    check_frames(clip, 50)


def test_load_video_without_duration_metadata(media: Path) -> None:
    with av.open(str(media / "live.webm")) as c:
        assert c.duration is None and c.streams.video[0].duration is None
    clip = load_video(media / "live.webm", num_frames=8)
    assert abs(clip.duration - 4.0) < 0.05
    check_frames(clip, 8)


class SpyContainer:
    """Wraps a PyAV container and counts seeks and demuxed packets."""

    def __init__(self, container) -> None:
        self.container, self.seeks, self.packets = container, 0, 0

    def __getattr__(self, name: str):
        return getattr(self.container, name)

    def __enter__(self) -> SpyContainer:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def seek(self, *args, **kwargs):
        self.seeks += 1
        return self.container.seek(*args, **kwargs)

    def demux(self, *args, **kwargs):
        for packet in self.container.demux(*args, **kwargs):
            self.packets += 1
            yield packet


def test_load_video_seeks_instead_of_decoding_everything(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spies: list[SpyContainer] = []
    real_open = av.open

    def spy_open(*args, **kwargs):
        spies.append(SpyContainer(real_open(*args, **kwargs)))
        return spies[-1]

    monkeypatch.setattr(av, "open", spy_open)
    clip = load_video(media / "long.mp4", num_frames=8)  # 60 s, 600 frames, a keyframe every 2 s
    assert clip.duration == pytest.approx(60.0) and clip.audio is None
    check_frames(clip, 8)
    assert len(spies) == 2 and spies[0].seeks == 8  # the file, and its keyframe probe (no decoding)
    assert spies[0].packets < 250, spies[0].packets  # at most ~one GOP per sampled frame, not 600
    assert spies[1].packets <= 7, spies[1].packets  # one packet per frame after the first: where a seek lands


def test_load_video_decodes_forward_past_a_keyframe_it_would_seek_back_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 10 s clip with one keyframe (x264's default GOP at 25 fps): seeking for each of 8 frames would decode
    from the start each time (~1,100 packets); decoding forward from the first gives the same frames and
    times, bit for bit, from ~250 packets."""
    video = make_video(tmp_path / "one_gop.mp4", seconds=10.0, with_audio=False, size=(64, 48), fps=25)
    spies: list[SpyContainer] = []
    real_open = av.open

    def spy_open(*args, **kwargs):
        spies.append(SpyContainer(real_open(*args, **kwargs)))
        return spies[-1]

    monkeypatch.setattr(av, "open", spy_open)
    forward = load_video(video, num_frames=8)
    assert spies[0].seeks == 1 and spies[0].packets <= 250, (spies[0].seeks, spies[0].packets)
    spies.clear()
    monkeypatch.setattr(io._KeyframeProbe, "keyframe_time", lambda self, target: None)  # unknown: seek each time
    seeking = load_video(video, num_frames=8)
    assert spies[0].seeks == 8 and spies[0].packets > 800, (spies[0].seeks, spies[0].packets)
    assert forward.frame_times == seeking.frame_times
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(forward.frames, seeking.frames))


def test_load_video_max_seconds(media: Path) -> None:
    expect_error(load_video, media / "long.mp4", r"^video is 60\.0s long, the limit is 30s$", max_seconds=30)
    assert len(load_video(media / "silent.mp4", num_frames=2, max_seconds=30).frames) == 2


def test_load_video_rejects_zero_frames(media: Path) -> None:
    with pytest.raises(ValueError):
        load_video(media / "silent.mp4", num_frames=0)


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("empty.mp4", r"file is empty \(0 bytes\)"),
        ("missing.mp4", "file does not exist"),
        ("half.mp4", "not a recognised audio or video file"),
        ("1k.mp4", "not a recognised audio or video file"),
        ("half.webm", "no video frame could be decoded"),
        ("text.mp4", "not a recognised audio or video file"),
        ("red.png", r"is an image \(png\), not a video"),
        ("blue.jpg", r"is an image \(jpeg\), not a video"),
        ("tone.wav", r"has no video stream \(audio only: give it as the audio input\)"),
        ("tone.m4a", r"has no video stream \(audio only: give it as the audio input\)"),
    ],
)
def test_load_video_errors(media: Path, name: str, pattern: str) -> None:
    expect_error(load_video, media / name, pattern)


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_load_video_skips_a_corrupt_packet(media: Path, tmp_path: Path, kind: str) -> None:
    bad = corrupt_packet(media / "av.avi", tmp_path / "bad.avi", kind, number=10)
    with av.open(str(bad)) as c, pytest.raises(av.error.FFmpegError):  # naive decoding fails on this file
        for _ in c.decode(**{kind: 0}):
            pass
    clip = load_video(bad, num_frames=8)
    check_frames(clip, 8)
    assert clip.audio is not None and abs(clip.audio.duration - 4.0) < 0.1  # ac3: one packet = 32 ms
    assert abs(dominant_frequency(clip.audio.samples, 16000) - 440) < 3
    assert abs(load_audio(bad).duration - clip.audio.duration) < 0.01


@pytest.mark.skipif(not MEGAMIND.exists(), reason="Debian package opencv-doc is not installed")
def test_megamind_avi_decodes_despite_corrupt_audio_packet() -> None:
    clip = load_video(MEGAMIND, num_frames=8)
    assert clip.duration == pytest.approx(11.26, abs=0.05) and clip.fps == pytest.approx(23.976, abs=0.01)
    assert len(clip.frames) == 8 and all(f.size == (720, 528) for f in clip.frames)
    assert clip.frame_times == sorted(clip.frame_times)
    for k, t in enumerate(clip.frame_times):  # AVI+mpeg4 B-frames: timestamps are off by 1-2 frames
        assert abs(t - (k + 0.5) * clip.duration / 8) < 0.15
    assert len({np.asarray(f).tobytes() for f in clip.frames}) == 8
    assert clip.audio is not None and clip.audio.sample_rate == 16000
    assert abs(clip.audio.duration - clip.duration) < 0.2
    assert float(np.sqrt(np.mean(clip.audio.samples**2))) > 0.01
    assert load_audio(MEGAMIND).sample_rate == 48000
    assert probe_kind(MEGAMIND) == "video"


@pytest.mark.skipif(not MEGAMIND_BUGGY.exists(), reason="Debian package opencv-doc is not installed")
def test_megamind_bugy_avi_has_no_sound() -> None:
    clip = load_video(MEGAMIND_BUGGY, num_frames=4)
    assert clip.audio is None and len(clip.frames) == 4
    expect_error(load_audio, MEGAMIND_BUGGY, "has no audio stream")


# ----------------------------------------------------------------------------- probing
@pytest.mark.parametrize(
    "name, kind",
    [
        ("red.png", "image"),
        ("blue.jpg", "image"),
        ("tone.wav", "audio"),
        ("tone.mp3", "audio"),
        ("tone.m4a", "audio"),
        ("tone.webm", "audio"),
        ("av.mp4", "video"),
        ("silent.mp4", "video"),
        ("av.webm", "video"),
        ("av.avi", "video"),
        ("live.webm", "video"),
    ],
)
def test_probe_kind(media: Path, name: str, kind: str) -> None:
    assert probe_kind(media / name) == kind


def test_probe_kind_ignores_the_extension(media: Path, tmp_path: Path) -> None:
    (tmp_path / "video.png").write_bytes((media / "av.mp4").read_bytes())
    (tmp_path / "image.wav").write_bytes((media / "red.png").read_bytes())
    assert probe_kind(tmp_path / "video.png") == "video"
    assert probe_kind(tmp_path / "image.wav") == "image"


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("text.txt", "not a recognised audio or video file"),
        ("text.png", "not a recognised audio or video file"),
        ("empty.mp4", "file is empty"),
        ("missing.bin", "file does not exist"),
        ("half.mp4", "not a recognised"),
    ],
)
def test_probe_kind_errors(media: Path, name: str, pattern: str) -> None:
    expect_error(probe_kind, media / name, pattern)


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_load_video_audio_window_decodes_only_the_centre(tmp_path, ext):
    video = make_video(tmp_path / f"long.{ext}", seconds=12.0, with_audio=True)
    full = load_video(video, num_frames=2, audio_sample_rate=16000).audio.samples
    clip = load_video(video, num_frames=2, audio_sample_rate=16000, audio_window=3.0)
    win = clip.audio.samples
    assert clip.audio.sample_rate == 16000 and len(win) == 3 * 16000
    assert abs(dominant_frequency(win, 16000) - 440.0) < 5
    # it is the centre of the soundtrack, to within 25 ms (a full AAC decode also holds the encoder's
    # 1024 priming samples, which shifts its middle by ~12 ms; the window is placed by timestamps)
    n, c0 = len(win), len(full) // 2 - len(win) // 2
    lag = min(range(-800, 801, 4), key=lambda k: float(np.abs(full[c0 + k : c0 + k + n] - win)[2000:-2000].mean()))
    assert abs(lag) <= 400
    assert load_video(video, num_frames=2, audio_window=0).audio is None  # 0: no soundtrack decoded


# ----------------------------------------------------------------------------- resampling
@pytest.mark.parametrize(
    ("rate", "target"), [(8000, 16000), (16000, 8000), (44100, 16000), (22050, 8000), (48000, 16000)]
)
def test_resample_matches_torchaudio(rate: int, target: int) -> None:
    import torch
    import torchaudio.functional as AF

    x = np.random.default_rng(0).uniform(-1, 1, int(rate * 1.3)).astype(np.float32)
    expected = AF.resample(torch.from_numpy(x), rate, target).numpy()
    got = resample(x, rate, target)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_resample_of_an_arbitrary_ratio_keeps_the_tone() -> None:
    from ume_mma.data import audio as data_audio

    x = np.sin(2 * np.pi * 100 * np.arange(8000) / 8000).astype(np.float32)  # 100 Hz at 8 kHz, 1 s
    faster = resample(x, 8123, 6007)  # a speed change (lengths, not rates): FFT path
    assert faster.shape == (round(8000 * 6007 / 8123),) and faster.dtype == np.float32
    assert abs(dominant_frequency(faster, 8000) - 100 * 8123 / 6007) < 3
    assert np.array_equal(data_audio.resample(x, 8000, 16000), resample(x, 8000, 16000))  # one resampler
    assert resample(x, 8000, None) is not None and np.array_equal(resample(x, 8000, 8000), x)


def test_load_audio_window_is_centred(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 5 * 8000, dtype=np.float32)  # a ramp: the value tells the position
    for ext in ("wav", "m4a"):  # soundfile path, PyAV path
        path = tmp_path / f"ramp.{ext}"
        if ext == "wav":
            sf.write(path, x, 8000)
        else:
            make_tone_file(path, 440.0, 5.0, 8000)
        whole, part = load_audio(path), load_audio(path, window=2.0)
        assert abs(whole.duration - 5.0) < 0.15 and abs(part.duration - 2.0) < 0.03  # aac pads up to 0.13 s
        if ext == "wav":
            assert np.array_equal(part.samples, whole.samples[12000:28000])
        assert abs(load_audio(path, window=4.5).duration - whole.duration) < 1e-6  # within the slack: all of it
        with pytest.raises(DecodeError, match="the limit is 3s"):  # the cap is on the file, not the window
            load_audio(path, max_seconds=3, window=2.0)


# ----------------------------------------------------------------------------- hostile inputs
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_audio_refuses_non_finite_samples(tmp_path: Path, bad: float) -> None:
    data = np.sin(np.arange(16000) / 5).astype(np.float32)
    data[100] = bad
    sf.write(tmp_path / "bad.wav", data, 16000, subtype="FLOAT")
    expect_error(load_audio, tmp_path / "bad.wav", r"^audio contains NaN or infinite samples", sample_rate=16000)


def test_load_audio_refuses_a_too_short_file(tmp_path: Path) -> None:
    sf.write(tmp_path / "one.wav", np.array([0.3], np.float32), 16000)
    expect_error(load_audio, tmp_path / "one.wav", r"^audio is only 1 sample \(0\.0001s\) long: too short")
    sf.write(tmp_path / "ok.wav", np.full(1600, 0.3, np.float32), 16000)  # 0.1 s: just enough
    assert load_audio(tmp_path / "ok.wav").samples.size == 1600


def test_load_audio_refuses_a_header_claiming_far_more_than_the_file_holds(tmp_path: Path) -> None:
    from tests.media import make_lying_wav

    expect_error(load_audio, make_lying_wav(tmp_path / "liar.wav"), r"WAV header announces 2048\.0 MB .* holds 1\.0 KB")
    sf.write(tmp_path / "cut.wav", np.sin(np.arange(64000) / 5).astype(np.float32), 16000)
    truncate_copy(tmp_path / "cut.wav", tmp_path / "half.wav", 0.6)  # an ordinary cut download still decodes
    assert load_audio(tmp_path / "half.wav").samples.size > 16000


def test_load_image_refuses_tiny_images(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), "red").save(tmp_path / "dot.png")
    expect_error(load_image, tmp_path / "dot.png", r"^image is only 1x1 pixels: too small")
    Image.new("RGB", (200, 4), "red").save(tmp_path / "strip.png")
    expect_error(load_image, tmp_path / "strip.png", r"200x4 pixels: too small")


def test_load_image_says_an_svg_is_a_drawing(tmp_path: Path) -> None:
    (tmp_path / "d.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"></svg>')
    expect_error(load_image, tmp_path / "d.svg", r"^an SVG drawing \(vector graphics\) is not supported")


def test_damaged_moov_is_not_called_a_file_without_video(media: Path, tmp_path: Path) -> None:
    from tests.media import damage_moov

    bad = damage_moov(media / "av.mp4", tmp_path / "bad.mp4")
    for fn in (load_video, load_audio, probe_kind):
        expect_error(fn, bad, r"no audio or video stream could be read.*'moov' atom")


def test_load_video_applies_the_pixel_cap_to_frames(media: Path) -> None:
    expect_error(
        load_video,
        media / "av.mp4",
        r"video frames have 3072 pixels, more than the limit 3000 \(64x48\)",
        max_pixels=3000,
    )
    assert len(load_video(media / "av.mp4", 2, max_pixels=3072).frames) == 2


def test_load_video_scales_frames_down_while_decoding(tmp_path: Path) -> None:
    from tests.media import make_moving_video

    clip = load_video(make_moving_video(tmp_path / "uhd.mp4", 2.0, (3840, 2160)), 4, max_side=256)
    assert [f.size for f in clip.frames] == [(256, 144)] * 4
    assert len({np.asarray(f).tobytes() for f in clip.frames}) == 4  # the square moves: real, distinct frames
    small = load_video(tmp_path / "uhd.mp4", 1, max_side=4096).frames[0]
    assert small.size == (3840, 2160)  # under max_side: untouched


def test_decoder_frame_side_follows_the_image_encoder() -> None:
    from types import SimpleNamespace

    from ume_mma.decode import FRAME_SIDE, frame_side

    def enc(size):
        return SimpleNamespace(spec=SimpleNamespace(image_size=size))

    assert frame_side({}) == FRAME_SIDE == frame_side({"image": enc(28)})
    assert frame_side({"image": enc(224)}) == 448
    assert frame_side({"video": enc(300), "audio": SimpleNamespace(spec=SimpleNamespace())}) == 600
