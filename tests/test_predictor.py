from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.media import make_tone_file, make_video
from ume_mma.errors import DecodeError, InputError
from ume_mma.predictor import Limits, Predictor

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"


@pytest.fixture()
def predictor():
    return Predictor.from_pretrained(FIXTURE, cache_size=4)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(img)
    wav = make_tone_file(tmp_path / "x.wav", 440.0, 1.0, 8000)
    return {"image": str(img), "audio": str(wav)}


def test_prediction_json_shape(predictor, files):
    d = predictor.predict(files).to_dict()
    assert set(d) == {"checkpoint", "fusion", "modalities_used", "fused", "branches", "sources"}
    assert d["fusion"] == "mma" and d["modalities_used"] == ["audio", "image"]
    for r in [d["fused"], *d["branches"].values()]:
        assert abs(sum(r["confidences"].values()) - 1) < 1e-4
        assert r["label"] == max(r["confidences"], key=r["confidences"].get)
    assert d["sources"] == {"audio": "audio file x.wav", "image": "image file x.png"}


def test_toggled_repeat_runs_no_encoder(predictor, files):
    full = predictor.predict(files)
    calls = predictor.stats["encoder_calls"]
    assert calls == 2
    only_image = predictor.predict(files, ["image"])
    assert predictor.stats["encoder_calls"] == calls  # served from the cache
    assert predictor.stats["cache_hits"] == 1
    assert list(only_image.branches) == ["image"]
    # the image branch is the same whether or not audio is present: late fusion
    assert only_image.branches["image"].confidences == full.branches["image"].confidences
    again = predictor.predict(files)
    assert predictor.stats["encoder_calls"] == calls and again.to_dict() == full.to_dict()


def test_cache_is_content_addressed_and_bounded(predictor, files, tmp_path):
    predictor.predict(files)
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(files["image"]).read_bytes())
    predictor.predict({"image": str(copy)})
    assert predictor.stats["encoder_calls"] == 2  # same bytes, other name: cache hit
    for i in range(6):
        sf.write(tmp_path / f"t{i}.wav", np.sin(np.arange(4000) * (i + 1) / 10).astype(np.float32), 8000)
        predictor.predict({"audio": str(tmp_path / f"t{i}.wav")})
    assert len(predictor.cache) == 4


def test_video_feeds_frames_and_soundtrack(predictor, tmp_path, files):
    video = make_video(tmp_path / "v.mp4", seconds=2.0, with_audio=True)
    p = predictor.predict({"video": str(video)})
    assert p.modalities_used == ["audio", "image"]
    assert p.sources["image"].startswith("8 frames sampled from video v.mp4")
    assert p.sources["audio"] == "soundtrack of video v.mp4"
    assert len(p.frames) == 8
    # a separate audio file wins over the soundtrack
    p2 = predictor.predict({"video": str(video), "audio": files["audio"]})
    assert p2.sources["audio"] == "audio file x.wav"


def test_silent_video_has_no_audio_branch(predictor, tmp_path):
    video = make_video(tmp_path / "s.mp4", seconds=1.5, with_audio=False)
    p = predictor.predict({"video": str(video)})
    assert p.modalities_used == ["image"] and "audio" not in p.branches
    assert "no soundtrack" in p.sources["audio"]


def test_bad_requests(predictor, files, tmp_path):
    with pytest.raises(InputError, match="not used by this model"):
        predictor.predict(files, ["text"])
    with pytest.raises(InputError, match="no input for any enabled modality"):
        predictor.predict({"text": ""})
    with pytest.raises(InputError, match="unknown inputs"):
        predictor.predict({"depth": "x.png"})
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty.png"):
        predictor.predict({"image": str(empty)})
    small = Predictor.from_pretrained(FIXTURE, limits=Limits(max_file_bytes=100))
    with pytest.raises(DecodeError, match="the limit is"):
        small.predict(files)
    # after errors the predictor still serves
    assert predictor.predict(files).modalities_used == ["audio", "image"]


def test_checkpoint_card_metrics_and_cache_clearing(predictor, files):
    assert predictor.folder is not None and predictor.metrics["accuracy"]["full"] == 1.0
    assert "UME-MMA checkpoint: tiny-fixture" in predictor.card
    predictor.predict(files)
    predictor.clear_cache()
    predictor.predict(files)
    assert predictor.stats["encoder_calls"] == 4  # nothing cached any more: both encoders ran again


def test_concurrent_predicts_are_consistent(predictor, files):
    from concurrent.futures import ThreadPoolExecutor

    expected = predictor.predict(files).to_dict()
    predictor.clear_cache()
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: predictor.predict(files).to_dict(), range(8)))
    assert all(o == expected for o in outs)


def test_missing_local_checkpoint_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    from ume_mma.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_pretrained("checkpoints/nope")
