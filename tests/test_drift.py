"""Simulated drift families (ume_mma.drift): identity at 0, seeded, each one changes its input and a stronger
severity changes it more, codecs round-trip real speech through PyAV, bad parameters are refused in words."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ume_mma import drift, io
from ume_mma.drift.audio import codec_roundtrip

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SPEECH = ASSETS / "agree_7_speech_7_en_US_f_Allison.wav"  # a real recording (asterisk, CC-BY-SA-3.0)
SENTENCE = "a quick brown fox jumps over the lazy dog while seven happy emoji smile at us"
SEVERITIES = (0.25, 0.5, 1.0)


def _digit() -> Image.Image:
    """A real MNIST digit of the assets (RGB, as decoded)."""
    return io.load_image(ASSETS / "agree_7_image_7.png")


def _emoji_like() -> Image.Image:
    """Dark strokes and colour on white (the emoji side of the stroke-width check)."""
    a = np.full((64, 64, 3), 255, np.uint8)
    a[16:48, 30:34] = (20, 20, 160)
    a[30:34, 12:52] = (160, 20, 20)
    return Image.fromarray(a)


def _clip() -> io.VideoClip:
    """8 frames of a square moving over a gradient."""

    def frame(i: int) -> Image.Image:
        a = np.zeros((48, 64, 3), np.uint8)
        a[:, :] = (30, 60, 90)
        a[10 + i : 24 + i, 5 + 4 * i : 20 + 4 * i] = (250, 200, 30)
        a[30:40, :] = np.linspace(0, 255, 64).astype(np.uint8)[None, :, None]
        return Image.fromarray(a)

    return io.VideoClip([frame(i) for i in range(8)], [i / 8 for i in range(8)], None, 1.0, 8.0)


def _speech() -> io.Audio:
    return io.load_audio(SPEECH, 16000)


def _stft(x: np.ndarray) -> np.ndarray:
    n = len(x) // 400 * 400
    return np.abs(np.fft.rfft(x[:n].reshape(-1, 400) * np.hanning(400), axis=1))


def _audio_distance(a: io.Audio, b: io.Audio, name: str) -> float:
    assert b.sample_rate == a.sample_rate
    x, y = a.samples, b.samples
    if name == "audio.speed":  # a time warp: compare long-term spectra (aligned frames decorrelate at once)
        return float(np.abs(np.log(_stft(x).mean(0) + 1e-6) - np.log(_stft(y).mean(0) + 1e-6)).mean())
    assert len(y) == len(x)
    return float(np.linalg.norm(_stft(x) - _stft(y)) / np.linalg.norm(_stft(x)))


def _pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float64)


def _distance(name: str, a, b) -> float:
    """How far a drifted input is from the original, per modality (0 = unchanged)."""
    modality = drift.get_drift(name).modality
    if modality == "image":
        assert b.size == a.size and b.mode == a.mode
        return float(np.abs(_pixels(a) - _pixels(b)).mean())
    if modality == "audio":
        return _audio_distance(a, b, name)
    if modality == "text" and name == "text.swap":  # a shuffle: the share of word pairs out of order
        pos = {w: i for i, w in enumerate(a.split())}  # SENTENCE has distinct words
        order = [pos[w] for w in b.split()]
        pairs = [(i, j) for i in range(len(order)) for j in range(i + 1, len(order))]
        return sum(order[i] > order[j] for i, j in pairs) / len(pairs)
    if modality == "text":
        return 1 - difflib.SequenceMatcher(None, a.split(), b.split()).ratio()
    assert len(b.frames) == len(a.frames) and b.audio is a.audio
    return float(np.mean([np.abs(_pixels(f) - _pixels(g)).mean() for f, g in zip(a.frames, b.frames)]))


def _inputs(name: str) -> list:
    modality = drift.get_drift(name).modality
    return {
        "image": [_digit(), _emoji_like()],
        "audio": [_speech()],
        "text": [SENTENCE],
        "video": [_clip()],
    }[modality]


ALL = drift.list_drifts()


def test_every_modality_has_fitting_and_held_out_families():
    assert len(ALL) >= 20
    for m in drift.MODALITIES:
        assert drift.list_drifts(m, "fit") and drift.list_drifts(m, "heldout"), m
    assert set(drift.list_drifts(split="fit")).isdisjoint(drift.list_drifts(split="heldout"))
    assert sorted(drift.list_drifts(split="fit") + drift.list_drifts(split="heldout")) == ALL
    for name in ALL:
        assert name.startswith(drift.get_drift(name).modality + ".")


@pytest.mark.parametrize("name", ALL)
def test_identity_at_severity_zero(name):
    for raw in _inputs(name):
        assert drift.apply_drift(raw, name, 0.0, seed=5) is raw
        assert drift.apply_drift(raw, name, 0, seed=[1, 2]) is raw


@pytest.mark.parametrize("name", ALL)
def test_seeded_and_monotone(name):
    """The same seed gives the same output; every severity > 0 changes the input, a stronger one more (at
    least as much on the grid, strictly more at 1 than at 0.25)."""
    for raw in _inputs(name):
        for seed in (0, 1, 2):
            outs = [drift.apply_drift(raw, name, s, seed) for s in SEVERITIES]
            again = drift.apply_drift(raw, name, SEVERITIES[1], seed)
            assert _distance(name, outs[1], again) == 0.0, "not deterministic under a seed"
            d = [_distance(name, raw, o) for o in outs]
            assert d[0] > 0, f"{name} at {SEVERITIES[0]} left the input unchanged"
            assert all(b >= a * 0.98 for a, b in zip(d, d[1:])), f"{name}: distances {d} fall with severity"
            assert d[-1] > d[0], f"{name}: severity 1 is no stronger than {SEVERITIES[0]}: {d}"


def test_seeds_differ_and_families_draw_their_own_streams():
    im = _digit()
    a, b = (drift.apply_drift(im, "image.noise", 0.5, s) for s in (0, 1))
    assert _distance("image.noise", a, b) > 0
    chained = drift.compose(im, [drift.Drift("image.blur", 0.5), drift.Drift("image.noise", 0.5)], seed=3)
    by_hand = drift.apply_drift(drift.apply_drift(im, "image.blur", 0.5, [3, 0]), "image.noise", 0.5, [3, 1])
    assert _distance("image.noise", chained, by_hand) == 0.0


@pytest.mark.parametrize("name", ["audio.mulaw", "audio.amr-nb", "audio.mp3", "audio.opus"])
def test_codecs_round_trip_real_speech_through_pyav(name):
    """A real recording through each codec: same rate and length, aligned (high correlation with the input),
    audibly changed, and the stronger setting further from the input."""
    a = _speech()
    weak, strong = (drift.apply_drift(a, name, s, 0) for s in (0.1, 1.0))
    for out in (weak, strong):
        assert out.sample_rate == a.sample_rate and len(out.samples) == len(a.samples)
        assert out.samples.dtype == np.float32 and np.isfinite(out.samples).all()
    corr = float(np.corrcoef(a.samples, weak.samples)[0, 1])
    assert corr > 0.8, f"{name}: decoded speech does not line up with the input (r={corr:.2f})"
    assert 0 < _audio_distance(a, weak, name) < _audio_distance(a, strong, name)


def test_codec_roundtrip_on_another_rate_keeps_it():
    a = io.Audio(_speech().samples[::2].copy(), 8000)
    out = codec_roundtrip(a, "libmp3lame", "mp3", 16000, 32000)
    assert out.sample_rate == 8000 and len(out.samples) == len(a.samples)


def test_stroke_width_follows_the_polarity():
    """Light strokes on dark (MNIST) and dark on light (emoji): thicker strokes cover more pixels either way."""
    for im, stroke_is_light in ((_digit(), True), (_emoji_like(), False)):
        sign = 1 if stroke_is_light else -1
        grey, thick, thin = (
            sign * (_pixels(x).mean(2) - 128) > 0
            for x in (
                im,
                drift.apply_drift(im, "image.stroke-thick", 1.0),
                drift.apply_drift(im, "image.stroke-thin", 0.5),
            )
        )
        assert thick.sum() > grey.sum() > thin.sum()


def test_text_edits_nest():
    """A stronger severity keeps the weaker one's edits: dropped tokens at 0.3 are dropped at 0.9."""
    weak, strong = (drift.apply_drift(SENTENCE, "text.drop", s, 4).split() for s in (0.3, 0.9))
    assert set(strong) <= set(weak) and len(strong) < len(weak)


def test_video_keeps_frames_and_soundtrack():
    clip = _clip()
    for name in drift.list_drifts("video"):
        out = drift.apply_drift(clip, name, 1.0, 0)
        assert len(out.frames) == 8 and out.frame_times == clip.frame_times and out.audio is clip.audio
        assert all(f.size == g.size for f, g in zip(out.frames, clip.frames))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: drift.apply_drift("text", "image.blurr", 0.5), "unknown drift 'image.blurr'; known: audio."),
        (lambda: drift.apply_drift("text", "text.typos", 1.5), "a drift severity is a number in [0, 1], got 1.5"),
        (lambda: drift.apply_drift("text", "text.typos", float("nan")), "a drift severity is a number in [0, 1]"),
        (lambda: drift.apply_drift("text", "text.typos", "0.5"), "a drift severity is a number in [0, 1], got '0.5'"),
        (lambda: drift.apply_drift("text", "text.typos", True), "a drift severity is a number in [0, 1], got True"),
        (lambda: drift.apply_drift("text", "image.blur", 0.5), "drift 'image.blur' takes a PIL.Image"),
        (lambda: drift.apply_drift(_digit(), "audio.mp3", 0.5), "drift 'audio.mp3' takes an ume_mma.io.Audio"),
        (lambda: drift.apply_drift("text", "text.typos", 0.5, -1), "a drift seed is a non-negative int"),
        (lambda: drift.Drift("text.case", -0.1), "a drift severity is a number in [0, 1], got -0.1"),
        (lambda: drift.Drift.parse("image.blur"), "a drift is written 'modality.family@severity'"),
        (lambda: drift.compose("x", [drift.Drift("text.case", 1), drift.Drift("image.blur", 1)]), "one modality"),
        (lambda: drift.list_drifts("smell"), "unknown modality 'smell'"),
        (lambda: drift.register_drift("blur", "fit", "x"), "names are 'modality.family'"),
        (lambda: drift.register_drift("image.x", "train", "x"), "split must be one of ('fit', 'heldout')"),
    ],
)
def test_bad_parameters_are_refused_in_words(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_parse_and_str_round_trip():
    d = drift.Drift.parse("audio.mp3@0.5")
    assert d == drift.Drift("audio.mp3", 0.5) and str(d) == "audio.mp3@0.5" and d.modality == "audio"


def test_a_registered_family_cannot_be_replaced():
    with pytest.raises(ValueError, match="already registered"):
        drift.register_drift("image.blur", "fit", "another blur")(lambda im, s, rng: im)
