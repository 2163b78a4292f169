"""The Gradio app through its public API (gradio_client), with real files: on a tiny checkpoint trained
here, and on the shipped ``checkpoints/av-digits`` and ``checkpoints/emoji-vl`` when they exist."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.media import make_png_bomb, make_video, truncate_copy  # noqa: E402
from tests.tiny import make_tiny_dataset  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402
from ume_mma.registry import MODALITIES  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
ASSETS = ROOT / "assets"
AV_DIGITS = "checkpoints/av-digits"
MAX_FILE_MB, MAX_VIDEO_SECONDS = 2, 5
# Extra checkpoints to serve: UME_MMA_APP_TEST_CHECKPOINTS="path1:path2" (e.g. a freshly trained one).
EMOJI_VL = "checkpoints/emoji-vl"  # image + text: the shipped checkpoint with a text branch
CHECKPOINTS = (
    ["tiny"]
    + [c for c in (AV_DIGITS, EMOJI_VL) if (ROOT / c / "config.json").is_file()]
    + [c for c in os.environ.get("UME_MMA_APP_TEST_CHECKPOINTS", "").split(":") if c]
)
KEYS = {"checkpoint", "fusion", "modalities_used", "fused", "branches", "sources"}


def train_tiny(root: Path) -> Path:
    """A tiny image + audio + text checkpoint (a few seconds on a CPU)."""
    import torch

    from ume_mma.train import run
    from ume_mma.trainconfig import load_config

    data = make_tiny_dataset(root / "data", with_text=True)
    cfg = load_config(
        None,
        task="tiny",
        data=str(data),
        out=str(root / "run"),
        epochs=3,
        mma_epochs=2,
        batch_size=8,
        cache_dir=None,
        eval_repeats=1,
        save_all=False,
        encoders={"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn", "text": "scratch.hashed-text"},
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest, and 8x faster than 2 on a busy 2-core CI
    try:
        run(cfg)
    finally:
        torch.set_num_threads(threads)
    return root / "run" / "checkpoint"


@pytest.fixture(scope="module", params=CHECKPOINTS)
def served(request, tmp_path_factory):
    """The app launched in-process on one checkpoint, a client, and the pool (to read cache stats)."""
    ref = str(train_tiny(tmp_path_factory.mktemp("tiny"))) if request.param == "tiny" else request.param
    pool = app.PredictorPool(Limits(max_file_bytes=MAX_FILE_MB * 2**20, max_video_seconds=MAX_VIDEO_SECONDS))
    demo = app.build_demo(ref, pool=pool)
    app.launch_app(demo, max_file_mb=MAX_FILE_MB, prevent_thread_lock=True, quiet=True)
    try:
        yield SimpleNamespace(
            ref=ref,
            pool=pool,
            url=demo.local_url,
            predictor=pool.get(ref).predictor,
            client=Client(demo.local_url, verbose=False),
        )
    finally:
        demo.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Real example files (assets/) and bad files of every kind."""
    d = tmp_path_factory.mktemp("media")
    good_mp4 = make_video(d / "tone.mp4", seconds=3.0)
    corrupt = bytearray(good_mp4.read_bytes())
    corrupt[len(corrupt) // 3 : len(corrupt) // 3 + 600] = bytes(600)  # zeroed packets in the middle
    (d / "corrupt.mp4").write_bytes(bytes(corrupt))
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("this is a text file, not a picture\n")
    (d / "big.wav").write_bytes(os.urandom(int(2.5 * 2**20)))
    return SimpleNamespace(
        image=ASSETS / "agree_7_image_7.png",
        audio=ASSETS / "agree_7_speech_7_en_US_f_Allison.wav",
        other_audio=ASSETS / "disagree_2_5_speech_5_es_MX_f_Allison.wav",
        video=ASSETS / "video_3.mp4",
        silent=ASSETS / "silent_video_4.mp4",
        webm=make_video(d / "tone.webm", seconds=2.0),
        corrupt=d / "corrupt.mp4",
        empty=d / "empty.png",
        notes=d / "notes.png",
        bomb=make_png_bomb(d / "bomb.png"),
        truncated=truncate_copy(good_mp4, d / "truncated.mp4", 0.5),
        long=make_video(d / "long.mp4", seconds=MAX_VIDEO_SECONDS + 1.5),
        big=d / "big.wav",
    )


def predict(client: Client, **kwargs):
    files = {k: handle_file(str(v)) for k, v in kwargs.items() if k in ("video", "audio", "image")}
    return client.predict(**kwargs | files, api_name="/predict")


def check(result: dict, served, expected: set[str]) -> None:
    """The JSON layout and its consistency: probabilities sum to 1, each label is its argmax."""
    assert set(result) == KEYS | ({"uncertain"} if served.predictor.model.config.correctness else set())
    assert result["checkpoint"] == served.ref
    assert result["fusion"] == served.predictor.model.config.fusion
    assert (
        sorted(result["branches"]) == result["modalities_used"] == sorted(expected & set(served.predictor.modalities))
    )
    assert set(result["branches"]) <= set(result["sources"])
    for res in [result["fused"], *result["branches"].values()]:
        conf = res["confidences"]
        assert set(conf) == set(served.predictor.labels)
        assert math.isclose(sum(conf.values()), 1.0, abs_tol=1e-4)
        assert res["label"] == max(conf, key=conf.get)


def needs(served, *modalities: str) -> None:
    missing = set(modalities) - set(served.predictor.modalities)
    if missing:
        pytest.skip(f"{served.ref} does not use {sorted(missing)}")


def test_image_and_audio(served, media):
    needs(served, "image", "audio")
    r = predict(served.client, image=media.image, audio=media.audio)
    check(r, served, {"image", "audio"})
    assert r["sources"] == {"image": f"image file {media.image.name}", "audio": f"audio file {media.audio.name}"}


@pytest.mark.parametrize("name", ["video", "webm"])
def test_video_with_sound_feeds_frames_and_soundtrack(served, media, name):
    needs(served, "image", "audio")
    video = getattr(media, name)
    r = predict(served.client, video=video)
    check(r, served, {"image", "audio"})
    assert r["sources"]["audio"] == f"soundtrack of video {video.name}"
    assert "frames sampled from video" in r["sources"]["image"]


def test_separate_audio_file_replaces_the_soundtrack(served, media):
    needs(served, "audio")
    r = predict(served.client, video=media.video, audio=media.other_audio)
    assert r["sources"]["audio"] == f"audio file {media.other_audio.name}"


def test_video_without_sound_has_no_audio_branch(served, media):
    needs(served, "image", "audio")
    r = predict(served.client, video=media.silent)
    check(r, served, {"image"})
    assert "audio" not in r["branches"]
    assert "no soundtrack" in r["sources"]["audio"]


def test_corrupt_packets_are_skipped(served, media):
    needs(served, "image")
    r = predict(served.client, video=media.corrupt, modalities=["image"])
    check(r, served, {"image"})


def test_text(served, media):
    needs(served, "text")
    r = predict(served.client, text="banana berry")
    check(r, served, {"text"})
    assert r["sources"] == {"text": "text"}
    r = predict(served.client, image=media.image, text="   ")  # blank text = absent
    assert "text" not in r["branches"]


def two_inputs(served, media) -> dict[str, str]:
    """Inputs for two of the checkpoint's modalities: image + audio, or image + text (emoji-vl)."""
    needs(served, "image")
    if "audio" in served.predictor.modalities:
        return {"image": str(media.image), "audio": str(media.audio)}
    needs(served, "text")
    return {"image": str(media.image), "text": "red apple fruit"}


def test_subset_of_modalities_reuses_cached_encoder_outputs(served, media):
    inputs = two_inputs(served, media)
    full = predict(served.client, **inputs)
    stats = dict(served.predictor.stats)
    only_image = predict(served.client, **inputs, modalities=["image"])
    check(only_image, served, {"image"})
    alone, together = only_image["branches"]["image"], full["branches"]["image"]
    if "fusion_weight" in together:  # reliability weighting: alone, a branch always has weight 1
        assert alone.pop("fusion_weight") == 1.0 and 0 < together.pop("fusion_weight") <= 1.0
    assert alone == together  # the branch's own answer, calibration and reliability do not depend on the others
    assert served.predictor.stats["encoder_calls"] == stats["encoder_calls"]  # no encoder ran again
    assert served.predictor.stats["cache_hits"] > stats["cache_hits"]


BAD = {  # name -> (inputs, words the message must contain)
    "empty file": ({"image": "empty"}, ["empty.png", "empty"]),
    "truncated mp4": ({"video": "truncated"}, ["truncated.mp4"]),
    "text file named .png": ({"image": "notes"}, ["notes.png", "not an image"]),
    "decompression bomb": ({"image": "bomb"}, ["bomb.png", "pixels", "limit"]),
    "wav given as image": ({"image": "audio"}, ["not an image", "audio"]),
    "image given as video": ({"video": "image"}, ["is an image"]),
    "video too long": ({"video": "long"}, ["long.mp4", f"limit is {MAX_VIDEO_SECONDS}s"]),
    "no input at all": ({}, ["no input"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_a_readable_error_and_the_app_keeps_serving(served, media, case):
    inputs, words = BAD[case]
    needs(served, "image")
    with pytest.raises(AppError) as err:
        predict(served.client, **{k: getattr(media, v) for k, v in inputs.items()})
    for word in words:
        assert word in str(err.value), str(err.value)
    assert "/tmp/gradio" not in str(err.value)  # the upload folder is not leaked
    check(predict(served.client, image=media.image), served, {"image"})


def test_file_over_the_size_cap_is_refused(served, media):
    with pytest.raises((AppError, ValueError), match="maximum file size"):
        predict(served.client, audio=media.big)
    check(predict(served.client, image=media.image), served, {"image"} & set(served.predictor.modalities))


def test_modalities_given_as_a_string(served, media):
    needs(served, "image")
    r = predict(served.client, image=media.image, modalities="image")
    check(r, served, {"image"})


def test_unknown_or_unused_modalities_are_refused(served, media):
    with pytest.raises(AppError, match=r"modalities \['smell'\] are not used by this model; it uses"):
        predict(served.client, image=media.image, modalities=["smell"])
    unused = [m for m in MODALITIES if m not in served.predictor.modalities]
    if unused:
        with pytest.raises(AppError, match="not used by this model"):
            predict(served.client, image=media.image, modalities=unused[:1])


def test_load_model_and_robustness(served, media, tmp_path):
    client = Client(served.url, verbose=False)  # its own session: loading a model changes only this one
    with pytest.raises(AppError, match="Could not load .*no config.json"):
        client.predict(str(tmp_path), api_name="/load_model")
    with pytest.raises(AppError, match="Could not load 'nobody/nothing'"):
        client.predict("nobody/nothing", api_name="/load_model")
    assert served.ref in client.predict(served.ref, api_name="/load_model")
    table, curve, caption = client.predict(served.ref, api_name="/robustness")
    assert table["headers"] == ["condition", "accuracy (%)"]
    assert table["data"][0][0] == "all modalities"
    assert Path(curve).is_file() and "samples" in caption
    check(predict(client, image=media.image), served, {"image"} & set(served.predictor.modalities))


def test_ui_prediction_renders_every_toggle_combination(served, media):
    """The UI event: one server call renders the view of every on/off combination (the browser then shows
    the enabled one without calling the server again)."""
    inputs = two_inputs(served, media)
    render = app.make_render(gr.Label(num_top_classes=3), gr.JSON())
    fns = app.handlers(served.pool, served.ref, render)
    args = [None, inputs.get("audio"), inputs["image"], inputs.get("text", "")]
    views, _ = fns.predict_ui(*args, served.ref)
    frames, shown = fns.frames_ui(*args, served.ref, None)
    assert shown is None and frames["visible"] == app.LATER  # no video: no frames (the gallery stays hidden)
    assert len(views["subsets"]) == 2 ** len(served.predictor.modalities)
    other = sorted(inputs)[0]  # audio, or image when the pair is image + text
    alone = served.predictor.predict(inputs, [other])
    assert views["subsets"][other][0]["value"]["label"] == alone.fused.label
    assert "switched off" in views["subsets"][other][-3]


def test_ui_sends_a_video_s_frames_once(served, media):
    needs(served, "image")
    render = app.make_render(gr.Label(num_top_classes=3), gr.JSON())
    fns = app.handlers(served.pool, served.ref, render)
    views, _ = fns.predict_ui(str(media.video), None, None, "", served.ref)
    calls = served.predictor.stats["encoder_batches"]
    frames, shown = fns.frames_ui(str(media.video), None, None, "", served.ref, None)  # after the answer
    assert served.predictor.stats["encoder_batches"] == calls  # the cached frames: no encoder ran
    assert shown == str(media.video) and frames["visible"] is True and len(frames["value"]) == 8
    assert max(f.size[1] for f in frames["value"]) <= app.FRAME_HEIGHT  # thumbnails, not full frames
    again, *_ = fns.frames_ui(str(media.video), None, None, "", served.ref, shown)
    assert again == gr.skip()  # the same video: its frames are not sent again
    replaced, shown = fns.frames_ui(str(media.video), None, str(media.image), "", served.ref, shown)
    assert shown is None and replaced["visible"] == app.LATER  # an image file replaces the frames: none shown


def test_public_endpoints_take_only_real_inputs(served):
    """MCP tools and API clients see plain inputs: no gr.State (it leaks Gradio internals in errors)."""
    demo_fns = [fn for fn in served.client.view_api(print_info=False, return_format="dict")["named_endpoints"]]
    assert {"/predict", "/load_model", "/robustness"} <= set(demo_fns)
    info = served.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = [p["parameter_name"] for p in info["/predict"]["parameters"]]
    assert names == ["video", "audio", "image", "text", "modalities", "checkpoint"]
    assert [p["parameter_name"] for p in info["/robustness"]["parameters"]] == ["checkpoint"]


def test_predict_takes_a_checkpoint(served, media):
    needs(served, "image")
    r = predict(served.client, image=media.image, checkpoint=served.ref)
    check(r, served, {"image"})
    with pytest.raises(AppError, match="Could not load 'nobody/nothing'"):
        predict(served.client, image=media.image, checkpoint="nobody/nothing")


def test_each_checkpoint_brings_its_own_examples(served):
    task = served.predictor.model.config.task
    samples, labels = app.load_examples(task)
    if task == "tiny":
        assert samples == [] and not app.examples_update(task)["visible"]
        return
    assert samples and len(samples) == len(labels)
    for row in samples:
        video, audio, image, text = row
        assert any(row)
        for path in (video, audio, image):
            assert path is None or Path(path).is_file()
        used = {"video": video, "audio": audio, "image": image, "text": text}
        assert all(m in served.predictor.modalities or m == "video" for m, v in used.items() if v)


def test_list_checkpoints_and_bad_default(tmp_path):
    (tmp_path / "checkpoints" / "a").mkdir(parents=True)
    (tmp_path / "checkpoints" / "a" / "config.json").write_text("{}")
    (tmp_path / "checkpoints" / "not-a-model").mkdir()
    assert app.list_checkpoints(tmp_path) == ["checkpoints/a"]
    with pytest.raises(gr.Error, match="no config.json"):
        app.build_demo(str(tmp_path))


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        app.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--mcp", "--max-file-mb", "--max-video-seconds", "--share", "--port", "--host"):
        assert flag in out
    for flag in ("--device", "--max-cache-mb"):
        assert flag in out


def test_cli_device_without_a_gpu_is_a_readable_exit():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exc:
        app.main(["--device", "cuda"])
    assert "no CUDA GPU is available" in str(exc.value) and "Traceback" not in str(exc.value)


def test_mcp_tools_take_only_real_inputs(recwarn):
    """``python app.py --mcp``: the tools are the public endpoints, with plain inputs and no warning about a
    gr.State input (an MCP client cannot fill one)."""
    import httpx

    demo = app.build_demo(AV_DIGITS)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, mcp_server=True)
    try:
        tools = {t["name"]: t for t in httpx.get(f"{demo.local_url}gradio_api/mcp/schema", timeout=30).json()}
    finally:
        demo.close()
    assert set(tools) == {"predict", "load_model", "robustness"}
    params = tools["predict"]["inputSchema"]["properties"]
    assert set(params) == {"video", "audio", "image", "text", "modalities", "checkpoint"}
    assert not [w for w in recwarn if "State" in str(w.message)]


@pytest.mark.skipif(not (ROOT / EMOJI_VL / "config.json").is_file(), reason="no emoji-vl checkpoint")
def test_cpu_app_keeps_triton_out(tmp_path):
    """``python app.py`` on the CPU blocks Triton before loading a checkpoint: emoji-vl's text encoder imports
    transformers, hence torch._dynamo, which would map 76 MB of libtriton (GPU kernels) for nothing."""
    import subprocess
    import sys

    pytest.importorskip("triton")
    code = (
        "import sys, app; app.launch_app = lambda *a, **k: None; "
        f"app.main(['--device', 'cpu', '--checkpoint', {EMOJI_VL!r}, '--db', {str(tmp_path / 'a.db')!r}]); "
        "print('torch._dynamo' in sys.modules, sys.modules.get('triton', 'absent'), "
        "'libtriton' in open('/proc/self/maps').read())"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True None False"
