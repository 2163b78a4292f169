"""Training (ume_mma.features) and prediction (ume_mma.predictor) decode inputs through one path (ume_mma.decode)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.media import make_tone_file
from tests.tiny import make_tiny_dataset
from ume_mma.data.format import load_dataset
from ume_mma.decode import WINDOW_MARGIN_S, Decoder, Limits
from ume_mma.encoders.base import Encoder
from ume_mma.errors import DecodeError
from ume_mma.features import prepare
from ume_mma.predictor import Predictor

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"


@pytest.fixture()
def dataset(tmp_path):
    """The tiny dataset, with the first sample's audio replaced by a 4 s, 16 kHz tone (resampled and windowed;
    an odd length puts the window off the 8 kHz grid, so decoding all of it would give other samples)."""
    root = make_tiny_dataset(tmp_path / "data", {"train": 2})
    samples = load_dataset(root).samples
    t = np.arange(4 * 16000 + 3) / 16000
    sf.write(samples[0].path("audio"), (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), 16000)
    return samples


def set_window(monkeypatch, seconds: float | None) -> None:
    """Make every encoder class report ``seconds`` as the audio window it looks at (None = all of it)."""
    classes, todo = [], [Encoder]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    for cls in classes:
        if "input_seconds" in vars(cls):
            monkeypatch.setattr(cls, "input_seconds", property(lambda self: seconds))


@pytest.fixture(params=[None, 0.5], ids=["whole", "window"])
def input_seconds(request, monkeypatch):
    """Run with encoders that look at all of their audio, and with ones that look at a centred 0.5 s."""
    set_window(monkeypatch, request.param)
    return request.param


def recorded_preprocess(encoder: Encoder) -> list:
    """Make ``encoder.preprocess`` record every batch it returns."""
    batches, original = [], encoder.preprocess

    def wrapper(raws):
        batches.append(original(raws))
        return batches[-1]

    encoder.preprocess = wrapper
    return batches


def test_training_and_prediction_decode_a_sample_identically(dataset, input_seconds):
    predictor = Predictor.from_pretrained(FIXTURE)
    window = None if input_seconds is None else input_seconds + WINDOW_MARGIN_S
    assert predictor.decoder.audio_window == window
    sample = dataset[0]
    for m in ("audio", "image"):
        encoder = predictor.model.encoders[m]
        training = prepare(dataset, m, encoder, cache_dir=None)  # what train.py and evaluate.py call
        batches = recorded_preprocess(encoder)
        predictor.predict({m: str(sample.path(m))})
        assert len(batches) == 1 and batches[0].shape[0] == 1
        assert torch.equal(training.data[0], batches[0][0]), f"{m}: training and prediction inputs differ"
    audio = Decoder.for_encoders(dict(predictor.model.encoders)).sample(sample, "audio")
    assert audio.sample_rate == 8000
    assert audio.duration == pytest.approx(4.0 if window is None else window, abs=1e-3)


def test_windowed_audio_predicts_like_the_whole_audio(dataset, monkeypatch):
    set_window(monkeypatch, None)
    whole = Predictor.from_pretrained(FIXTURE).predict({"audio": str(dataset[0].path("audio"))})
    set_window(monkeypatch, 0.5)  # what the tiny encoder crops
    windowed = Predictor.from_pretrained(FIXTURE)
    assert windowed.decoder.audio_window == 0.5 + WINDOW_MARGIN_S
    got = windowed.predict({"audio": str(dataset[0].path("audio"))})
    for label, p in whole.branches["audio"].confidences.items():
        assert got.branches["audio"].confidences[label] == pytest.approx(p, abs=1e-4)


def test_training_applies_the_limits(dataset):
    encoder = Predictor.from_pretrained(FIXTURE).model.encoders["audio"]
    with pytest.raises(DecodeError, match=rf"{dataset[0].path('audio').name}: audio is 4.0s long, the limit is 2s"):
        prepare(dataset, "audio", encoder, cache_dir=None, limits=Limits(max_audio_seconds=2))
    with pytest.raises(DecodeError, match="the limit is 0 MB"):
        prepare(dataset, "image", encoder, cache_dir=None, limits=Limits(max_file_bytes=10))
    ok = prepare(dataset, "audio", encoder, cache_dir=None)  # default limits: 120 s
    assert ok.present.all() and len(ok.present) == len(dataset)


def test_cached_training_inputs_depend_on_the_decoding(dataset, tmp_path):
    encoder = Predictor.from_pretrained(FIXTURE).model.encoders["audio"]
    prepare(dataset, "audio", encoder, cache_dir=tmp_path / "c")
    prepare(dataset, "audio", encoder, cache_dir=tmp_path / "c", limits=Limits(max_audio_seconds=60))
    assert len(list((tmp_path / "c").glob("*.safetensors"))) == 2  # other limits: another cache file
    with pytest.raises(DecodeError, match="the limit is 2s"):  # a cached file does not bypass the limits
        prepare(dataset, "audio", encoder, cache_dir=tmp_path / "c", limits=Limits(max_audio_seconds=2))


def test_decoder_rejects_unknown_kinds(tmp_path):
    with pytest.raises(ValueError, match="unknown source kind 'depth'"):
        Decoder()("depth", tmp_path)
    assert Decoder()("text", "hello") == ["hello"]
    assert np.isclose(Decoder(audio_rate=8000)("audio", make_tone_file(tmp_path / "t.wav"))[0].duration, 1.0)


class _VideoSample:
    """A dataset sample with only a video (what ``Decoder.sample`` reads of a ``Sample``)."""

    text = None

    def __init__(self, video: Path) -> None:
        self.video = video

    def path(self, modality: str) -> Path:
        assert modality == "video"
        return self.video


def test_training_video_clips_are_the_predictors_frames(tmp_path):
    from tests.media import make_video

    video = make_video(tmp_path / "v.mp4", seconds=2.0, with_audio=True)
    predictor = Predictor.from_pretrained(FIXTURE)
    training = Decoder.for_encoders({}).sample(_VideoSample(video), "video")  # a model without audio encoder
    frames = predictor.decoder("frames", video)
    assert len(training.frames) == len(frames) == predictor.num_frames
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(training.frames, frames))
    assert training.audio is None  # no audio encoder: the soundtrack is not decoded
    assert predictor.decoder("soundtrack", video)[0].sample_rate == 8000  # the tiny audio encoder's rate
