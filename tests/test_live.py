"""ume_mma.live: the missing-input detectors (silence, black, frozen, no device) and the live session's files,
on the shipped examples and on the shipped av-digits checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ume_mma import live  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGIT = ROOT / "assets" / "agree_7_image_7.png"  # a white 7 on black (MNIST)
SPEECH = ROOT / "assets" / "agree_7_speech_7_en_US_f_Allison.wav"  # "seven", 8 kHz


def camera_frame(path: Path = DIGIT, noise: int = 0, seed: int = 0) -> np.ndarray:
    """A 120x160 RGB frame with the picture in its centre square (as a webcam held to it), plus sensor noise."""
    square = np.asarray(Image.open(path).convert("L").resize((120, 120)), dtype=np.int16)
    grey = np.zeros((120, 160), np.int16)
    grey[:, 20:140] = square
    if noise:
        grey += np.random.default_rng(seed).integers(-noise, noise + 1, grey.shape).astype(np.int16)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def speech() -> tuple[int, np.ndarray]:
    samples, rate = sf.read(SPEECH, dtype="int16")
    return rate, samples


def test_silence_threshold_is_in_dbfs_of_the_loudest_block():
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)  # full-scale sine: RMS -3.01 dBFS
    assert live.loudest_dbfs(tone, rate) == pytest.approx(-3.01, abs=0.05)
    assert live.loudest_dbfs(tone * 10 ** (-60 / 20), rate) == pytest.approx(-63.01, abs=0.05)
    assert live.is_silent(np.zeros(rate, np.int16), rate)
    assert live.is_silent(tone * 10 ** (-55 / 20), rate)  # -58 dBFS: below -50
    assert not live.is_silent(tone * 10 ** (-40 / 20), rate)  # -43 dBFS: above
    quiet = np.zeros(2 * rate, np.float32)
    quiet[rate : rate + 1600] = tone[:1600] * 0.1  # a 0.1 s word in a 2 s window: the loudest block counts
    assert not live.is_silent(quiet, rate)
    rate8, word = speech()
    assert not live.is_silent(word, rate8)  # int16 as Gradio streams it
    assert live.is_silent((word // 2000).astype(np.int16), rate8)  # the same word 66 dB down


def test_black_is_the_brightest_pixels_not_the_mean():
    digit = camera_frame()
    assert live.luma(digit).mean() < 30  # mostly black page: a mean-luma rule would call it black
    assert not live.is_black(digit)
    covered = np.random.default_rng(1).integers(0, 12, (120, 160, 3)).astype(np.uint8)  # dark sensor noise
    assert live.is_black(covered)
    assert live.is_black(np.zeros((120, 160, 3), np.uint8))
    assert not live.is_black(np.full((120, 160, 3), 30, np.uint8))  # a dim room is still a picture


def test_frame_change_and_centre_square():
    a, b = camera_frame(noise=1, seed=0), camera_frame(noise=1, seed=1)
    assert 0 < live.frame_change(a, b) < live.STILL_DIFF  # sensor noise: the same view
    assert live.frame_change(a, a) == 0.0
    other = camera_frame(ROOT / "assets" / "disagree_2_5_image_2.png")
    assert live.frame_change(a, other) > 10 * live.STILL_DIFF
    assert live.frame_change(a, None) == float("inf")
    assert live.frame_change(a, a[:60]) == float("inf")
    assert live.centre_square(a).shape == (120, 120, 3)
    np.testing.assert_array_equal(live.centre_square(a), a[:, 20:140])


def test_presence_of_a_session(tmp_path):
    s = live.LiveSession(tmp_path, window_seconds=2.0)
    found, states = s.inputs(["audio", "image"], now=0.0)
    assert found == {} and str(states["image"]) == "missing: no camera"
    assert str(states["audio"]) == "missing: no microphone"
    rate, word = speech()
    s.push_audio(rate, word, now=0.0)
    s.push_frame(camera_frame(noise=1, seed=0), now=0.0)
    found, states = s.inputs(["audio", "image"], now=0.1)
    assert {m: p.state for m, p in states.items()} == {"image": "present", "audio": "present"}
    heard = sf.read(found["audio"], dtype="int16")[0]  # the window's utterance: the word, its silence trimmed
    assert sf.info(found["audio"]).samplerate == rate and 0.3 * rate < len(heard) < len(word)
    assert np.abs(heard).max() == np.abs(word).max()
    assert Image.open(found["image"]).size == (120, 120)
    # the same frame for FROZEN_SECONDS: frozen; a changed pixel makes it live again
    s.push_frame(camera_frame(noise=1, seed=0), now=live.FROZEN_SECONDS - 0.1)
    assert s.image_presence(now=live.FROZEN_SECONDS - 0.1).state == "present"
    s.push_frame(camera_frame(noise=1, seed=0), now=live.FROZEN_SECONDS + 0.1)
    assert str(s.image_presence(now=live.FROZEN_SECONDS + 0.1)) == "missing: frozen frame"
    s.push_frame(camera_frame(noise=1, seed=2), now=live.FROZEN_SECONDS + 0.2)
    assert s.image_presence(now=live.FROZEN_SECONDS + 0.2).state == "present"
    # nothing new for STALE_SECONDS: the device is gone
    late = live.FROZEN_SECONDS + 0.2 + live.STALE_SECONDS + 0.1
    assert str(s.image_presence(now=late)) == "missing: no camera"
    assert str(s.audio_presence(now=late)) == "missing: no microphone"
    # black frames and silence are missing, and never reach the inputs
    s.push_frame(np.zeros((120, 160, 3), np.uint8), now=late)
    s.push_audio(rate, np.zeros(2 * rate, np.int16), now=late)
    found, states = s.inputs(["audio", "image"], now=late)
    assert found == {} and str(states["image"]) == "missing: black frame" and str(states["audio"]) == "missing: silence"


def test_the_audio_window_keeps_the_last_seconds():
    w = live.AudioWindow(2.0)
    for i in range(5):
        w.push(8000, np.full(4000, i, np.int16))  # 0.5 s each
    assert w.duration == 2.0 and w.chunks == 5 and w.received == 2.5
    np.testing.assert_allclose(w.samples[:4000] * 32767, 1.0, atol=1e-3)  # chunks 1..4 kept, 0 dropped
    w.push(16000, np.zeros(1600, np.int16))  # a new rate starts over
    assert w.rate == 16000 and w.duration == 0.1


def test_an_unchanged_view_is_passed_as_the_same_file(tmp_path):
    s = live.LiveSession(tmp_path)
    rate, word = speech()
    five, rate5 = sf.read(ROOT / "assets" / "disagree_2_5_speech_5_es_MX_f_Allison.wav", dtype="int16")
    assert rate5 == rate
    pause = np.zeros(rate // 4, np.int16)
    s.push_audio(rate, word, now=0.0)
    s.push_frame(camera_frame(noise=1, seed=0), now=0.0)
    first, _ = s.inputs(["audio", "image"], now=0.0)
    s.push_frame(camera_frame(noise=1, seed=1), now=0.1)  # sensor noise only
    s.push_audio(rate, pause, now=0.1)  # the window slides on, over the same word
    second, _ = s.inputs(["audio", "image"], now=0.1)
    assert second == first  # the same view, the same utterance: the same files
    s.push_frame(camera_frame(ROOT / "assets" / "disagree_2_5_image_2.png"), now=0.2)
    s.push_audio(rate, np.concatenate([five, pause]), now=0.2)  # another word
    third, _ = s.inputs(["audio", "image"], now=0.2)
    assert third["image"] != first["image"] and third["audio"] != first["audio"]
    assert len(sf.read(third["audio"])[0]) < len(five) + len(pause)  # that word alone
    for i, w in enumerate([word, five]):
        s.push_frame(camera_frame(noise=1, seed=3 + i), now=0.3 + 0.1 * i)
        s.push_audio(rate, np.concatenate([w, pause]), now=0.3 + 0.1 * i)
        s.inputs(["audio", "image"], now=0.3 + 0.1 * i)
    assert not Path(first["image"]).exists() and not Path(first["audio"]).exists()  # old files are removed
    assert len(list(tmp_path.iterdir())) <= 4


def test_one_word_keeps_its_span_while_the_window_slides():
    rate, word = speech()
    x = live.as_float(word)
    stream = np.concatenate([np.zeros(rate // 2, np.float32), x, np.zeros(rate, np.float32)])
    window = 2 * rate
    spans = {live.utterance_span(stream[i : i + window], rate, i) for i in range(0, len(stream) - window + 1, 70)}
    assert len(spans) == 1  # every 70-sample step: the same samples of the stream
    start, end = spans.pop()
    assert start <= rate // 2 + np.argmax(np.abs(x)) < end


@pytest.fixture(scope="module")
def predictor():
    from ume_mma.predictor import Predictor

    return Predictor.from_pretrained(ROOT / "checkpoints" / "av-digits", device="cpu")


def test_live_inputs_on_the_shipped_checkpoint(predictor, tmp_path):
    s = live.LiveSession(tmp_path, live.window_seconds(predictor.model.encoders))
    assert s.window_seconds == 2.0  # what the Whisper tiny.en encoder reads
    rate, word = speech()
    s.push_audio(rate, word, now=0.0)
    s.push_frame(camera_frame(noise=1, seed=0), now=0.0)
    found, _ = s.inputs(predictor.modalities, now=0.0)
    both = predictor.predict(found)
    assert both.fused.label == "7" and both.modalities_used == ["audio", "image"]
    calls = predictor.stats["encoder_calls"]
    s.push_frame(camera_frame(noise=1, seed=1), now=0.1)
    assert predictor.predict(s.inputs(predictor.modalities, now=0.1)[0]).fused.label == "7"
    assert predictor.stats["encoder_calls"] == calls  # nothing changed: no encoder ran
    s.push_frame(np.zeros((120, 160, 3), np.uint8), now=0.2)  # the lens covered
    found, states = s.inputs(predictor.modalities, now=0.2)
    audio_only = predictor.predict(found)
    assert states["image"].state == "missing" and audio_only.modalities_used == ["audio"]
    assert audio_only.fused.label == audio_only.branches["audio"].label


def test_the_utterance_is_the_last_word_not_cut_by_the_window(tmp_path):
    rate, word = speech()  # a 1 s clip, the word in its middle
    x = live.as_float(word)
    pause = np.zeros(rate // 2, np.float32)
    tail = 0.5 * x[int(0.55 * rate) :]  # the end of a word cut by the window's start (quieter than the rest)
    head = 0.5 * x[: int(0.55 * rate)]  # the start of a word still being said at the window's end
    window = np.concatenate([tail, pause, x, pause, head])
    got = live.utterance(window, rate)
    start = len(tail) + len(pause)
    assert np.abs(got).max() == pytest.approx(np.abs(x).max())  # the whole word, not its cut end
    assert len(got) <= len(x) + 2 * live.UTTERANCE_PAD * rate
    idx = int(np.argmax(np.abs(window)))
    assert start <= idx < start + len(x)
    only = live.utterance(np.concatenate([tail, pause]), rate)  # nothing else: the cut word is all there is
    assert 0 < len(only) <= len(tail) + live.UTTERANCE_PAD * rate
    cut = live.utterance(np.concatenate([0.5 * tail, pause, head]), rate)  # two cut words: the louder one
    assert np.abs(cut).max() == pytest.approx(np.abs(head).max())
    assert len(live.utterance(np.zeros(0, np.float32), rate)) == 0


def test_a_streamed_chunk_is_read_past_its_header_size(tmp_path):
    rate, word = speech()
    path = tmp_path / "chunk.wav"
    sf.write(path, word[:800], rate, subtype="PCM_16")  # a header for 800 samples...
    with open(path, "ab") as f:
        f.write(word[800:2400].astype("<i2").tobytes())  # ...and the chunks sent after it in the same file
    got_rate, got = live.read_wav_chunk(path)
    assert got_rate == rate
    np.testing.assert_array_equal(got, word[:2400])
    assert len(sf.read(path)[0]) == 800  # what a reader trusting the header gets
    (tmp_path / "x.wav").write_bytes(b"not a wav file at all, no")
    with pytest.raises(ValueError, match="not a WAV"):
        live.read_wav_chunk(tmp_path / "x.wav")
