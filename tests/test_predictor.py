import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from tests.close import assert_close
from tests.media import make_tone_file, make_video
from ume_mma.errors import DecodeError, InputError, UmeMmaError
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


def test_shown_frames_are_the_predicted_frames_without_an_encoder_call(predictor, tmp_path, files):
    """The frames a UI shows after an answer: those the prediction used (from the cache of sampled frames), or
    decoded on a miss; none when an image file replaces them or there is no video. No encoder runs."""
    video = make_video(tmp_path / "v.mp4", seconds=2.0, with_audio=True)
    p = predictor.predict({"video": str(video)})
    calls = predictor.stats["encoder_calls"]
    shown, frames = predictor.shown_frames({"video": str(video)})
    assert shown == video and [f.tobytes() for f in frames] == [f.tobytes() for f in p.frames]
    predictor.clear_cache()
    again = predictor.shown_frames({"video": str(video)})[1]  # a miss: decoded, the same frames
    assert [f.tobytes() for f in again] == [f.tobytes() for f in p.frames]
    assert predictor.shown_frames({"video": str(video), "image": files["image"]}) == (None, [])
    assert predictor.shown_frames({"audio": files["audio"]}) == (None, [])
    assert predictor.stats["encoder_calls"] == calls


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


def test_audio_cap_is_passed_to_the_decoder(files, tmp_path):
    long = make_tone_file(tmp_path / "three.wav", 440.0, 3.0, 8000)
    capped = Predictor.from_pretrained(FIXTURE, limits=Limits(max_audio_seconds=1))
    with pytest.raises(DecodeError, match=r"three.wav: audio is 3.0s long, the limit is 1s"):
        capped.predict({"audio": str(long)})
    assert capped.predict({"audio": files["audio"]}).modalities_used == ["audio"]  # 1 s: within the cap
    roomy = Predictor.from_pretrained(FIXTURE, limits=Limits(max_audio_seconds=5))
    assert roomy.predict({"audio": str(long)}).modalities_used == ["audio"]


def test_subsets_fuse_every_combination(predictor, files):
    p = predictor.predict(files, subsets=True)
    assert sorted(p.subsets) == ["audio", "audio+image", "image"]
    assert p.subsets["audio+image"].confidences == p.fused.confidences
    only_image = predictor.predict(files, ["image"])
    assert p.subsets["image"].confidences == only_image.fused.confidences
    assert predictor.predict(files).subsets == {}


def test_cpu_device_matches_the_default(files):
    default = Predictor.from_pretrained(FIXTURE).predict(files, subsets=True)
    cpu = Predictor.from_pretrained(FIXTURE, device="cpu")
    assert cpu.device == torch.device("cpu")
    got = cpu.predict(files, subsets=True)
    assert_close(got, default)  # another device's kernels: equal up to float rounding
    assert_close(got.subsets, default.subsets)
    assert all(type(v) is float for v in got.fused.confidences.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_readable_error():
    with pytest.raises(UmeMmaError, match="no CUDA GPU is available"):
        Predictor.from_pretrained(FIXTURE, device="cuda")
    with pytest.raises(UmeMmaError, match="unknown device 'tpu'"):
        Predictor.from_pretrained(FIXTURE, device="tpu")


def test_predict_many_equals_sequential_predicts(files, tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=2.0, with_audio=True)
    other = make_tone_file(tmp_path / "y.wav", 900.0, 0.7, 8000)
    requests = [files, {"audio": str(other)}, {"video": str(video)}, {"image": files["image"], "audio": str(other)}]
    sequential = Predictor.from_pretrained(FIXTURE)
    expected = [sequential.predict(r, subsets=True) for r in requests]
    batched = Predictor.from_pretrained(FIXTURE)
    batched.predict({"image": files["image"]})  # one cache hit in the batch
    got = batched.predict_many(requests, subsets=True)
    # batched and one-at-a-time matrix products may round differently: equal up to tests.close.TOL, and the
    # labels, their ranking, the sources and the flags exactly
    assert_close([g.to_dict() for g in got], [e.to_dict() for e in expected])
    assert_close([g.subsets for g in got], [e.subsets for e in expected])
    assert len(got[2].frames) == 8
    # misses of a modality are encoded in one call: image (x.png cached; video frames) and audio (3 files)
    assert batched.stats["encoder_batches"] == 1 + 2
    assert batched.stats["encoder_calls"] == 1 + 1 + 3
    assert batched.stats["cache_hits"] == 2  # x.png in requests 0 and 3


def test_predict_many_bad_request_fails_alone(predictor, files, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    requests = [files, {"audio": str(bad)}, {"depth": "x"}, {"text": ""}, {"image": files["image"]}]
    got = predictor.predict_many(requests)
    assert_close(got[0], predictor.predict(files))  # a batch of 5 against one call: float rounding may differ
    assert isinstance(got[1], DecodeError) and "bad.wav" in str(got[1])
    assert isinstance(got[2], InputError) and "unknown inputs" in str(got[2])
    assert isinstance(got[3], InputError) and "no input for any enabled modality" in str(got[3])
    assert got[4].branches["image"] == got[0].branches["image"]
    with pytest.raises(DecodeError, match="bad.wav"):  # predict raises what predict_many returns
        predictor.predict({"audio": str(bad)})


def test_predict_many_with_modalities_per_request(predictor, files):
    both = predictor.predict_many([files, files], iter(["image"]))  # an iterator serves every request
    assert [p.modalities_used for p in both] == [["image"], ["image"]]
    got = predictor.predict_many([files, files, files], modalities_each=[None, ["image"], ["text"]])
    assert got[0].modalities_used == ["audio", "image"] and got[1].modalities_used == ["image"]
    assert got[1].fused == predictor.predict(files, ["image"]).fused
    assert isinstance(got[2], InputError) and "not used by this model" in str(got[2])
    with pytest.raises(ValueError, match="2 entries for 3 requests"):
        predictor.predict_many([files] * 3, modalities_each=[None, None])


def test_an_encoder_error_lands_on_its_own_request(predictor, files, tmp_path, monkeypatch):
    other = make_tone_file(tmp_path / "y.wav", 900.0, 0.7, 8000)
    encoder = predictor.model.encoders["audio"]
    original = encoder.preprocess

    def picky(raws):  # fails on the 900 Hz clip (0.7 s), whatever else is in the batch
        if any(abs(a.duration - 0.7) < 1e-3 for a in raws):
            raise DecodeError("y.wav", "the encoder refuses it")
        return original(raws)

    monkeypatch.setattr(encoder, "preprocess", picky)
    got = predictor.predict_many([{"audio": files["audio"]}, {"audio": str(other)}])
    assert got[0].modalities_used == ["audio"]
    assert isinstance(got[1], DecodeError) and "refuses" in str(got[1])


# ----------------------------------------------------------------------------- hostile inputs
@pytest.mark.parametrize("given", ["image", " image ", "image,", ["image"], ("image",)])
def test_modalities_given_as_a_string_is_one_name(predictor, files, given):
    p = predictor.predict(files, given)
    assert p.modalities_used == ["image"]
    both = predictor.predict_many([files], "audio, image")[0]
    assert both.modalities_used == ["audio", "image"]
    assert predictor.predict(files, "").modalities_used == ["audio", "image"]  # blank = all


def test_modalities_that_are_not_names_are_refused(predictor, files):
    with pytest.raises(InputError, match="not used by this model") as info:
        predictor.predict(files, "imag")
    assert "'imag'" in str(info.value) and "'i'" not in str(info.value)
    with pytest.raises(InputError, match="names such as 'image'"):
        predictor.predict(files, [3])


def test_text_given_to_a_checkpoint_without_text_is_said_in_sources(predictor, files, tmp_path):
    p = predictor.predict(files | {"text": "seven"})
    assert p.modalities_used == ["audio", "image"]
    assert p.sources["text"] == "not used: this checkpoint has no text branch"
    assert "text" not in predictor.predict(files | {"text": "  "}).sources  # keys only for inputs given
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    p = predictor.predict(files | {"video": str(video)})
    assert p.sources["video"] == "not used: the image and audio files given replace its frames and soundtrack"
    assert "video" not in predictor.predict(files | {"video": str(video)}, ["image"]).sources  # switched off


def test_text_alone_on_a_checkpoint_without_text_says_what_it_takes(predictor):
    with pytest.raises(InputError) as info:
        predictor.predict({"text": "seven"})
    assert str(info.value) == (
        "this checkpoint has no text branch; it takes an audio file, an image or a video "
        "(for its frames and soundtrack)"
    )


def test_non_finite_features_never_give_a_null_confidence(predictor, files, monkeypatch):
    encoder = predictor.model.encoders["audio"]
    monkeypatch.setattr(encoder, "forward", lambda x: torch.full((x.shape[0], 16), float("nan")))
    p = predictor.predict(files)
    assert p.modalities_used == ["image"] and "NaN or infinite" in p.sources["audio"]
    assert all(math.isfinite(v) for v in p.fused.confidences.values())
    with pytest.raises(InputError, match="no input for any enabled modality .*audio: not used: the audio encoder"):
        predictor.predict({"audio": files["audio"]})


def test_caches_are_bounded_in_bytes(files, tmp_path):
    small = Predictor.from_pretrained(FIXTURE, cache_size=None, cache_mb=16 * 4 * 3 / 2**20, frames_mb=0.2)
    for i in range(5):
        sf.write(tmp_path / f"t{i}.wav", np.sin(np.arange(4000) * (i + 1) / 10).astype(np.float32), 8000)
        small.predict({"audio": str(tmp_path / f"t{i}.wav")})
    assert len(small.cache) == 3 and small.cache.nbytes == 3 * 16 * 4  # three Tensor[16] of float32
    for i in range(3):  # 8 frames of 256x144 RGB (~0.88 MB) per 4K clip: over the frames budget, not kept
        video = make_video(tmp_path / f"v{i}.mp4", seconds=1.0, size=(1280, 720), with_audio=False)
        small.predict({"video": str(video)})
    assert small.frames.nbytes <= 0.2 * 2**20
    assert small.decoder.frame_side == 256


def test_video_frames_are_cached_at_the_encoder_s_size(predictor, tmp_path):
    video = make_video(tmp_path / "hd.mp4", seconds=1.0, size=(1280, 720), with_audio=False)
    p = predictor.predict({"video": str(video)})
    assert [f.size for f in p.frames] == [(256, 144)] * 8
    assert predictor.frames.nbytes == 64 + 8 * 256 * 144 * 3  # a list of 8 RGB frames


def test_a_video_beside_an_image_on_an_image_text_checkpoint_feeds_nothing(tmp_path):
    """On a checkpoint whose only video route is the image branch, an image file given replaces the frames."""
    import json

    emoji = Path(__file__).resolve().parent.parent / "checkpoints" / "emoji-vl"
    if not (emoji / "config.json").is_file():
        pytest.skip("no emoji-vl checkpoint")
    if "audio" in json.loads((emoji / "config.json").read_text())["encoders"]:
        pytest.skip("emoji-vl has an audio branch")
    predictor = Predictor.from_pretrained(emoji)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    p = predictor.predict({"image": str(tmp_path / "red.png"), "video": str(video)})
    assert p.sources["video"] == "not used: the image file given replaces its frames"
