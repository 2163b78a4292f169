"""A new task through the launched app (issue 21): spoken-icons (built here, small: 3 takes per voice and word)
trained by ``/start_job task="new"`` with gradio_client and in the Train tab in Chromium, from folder to served
model: the job's checkpoint has the data's labels, loads by name (``job-N``) and predicts them; what cannot work is
refused in words and leaves no job."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.chromium import ARGS, CHROMIUM  # noqa: E402
from tests.jobsutil import finished, make_base, wait_for  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ume_mma.annotate import open_store  # noqa: E402
from ume_mma.data.spoken_icons import WORDS, build_spoken_icons  # noqa: E402
from ume_mma.jobs import JobStore, list_jobs  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
ARTIFACTS = ROOT / "tests" / "artifacts"
WAIT_MS = 300_000  # browser deadlines on a busy machine
ENCODERS = {"audio": "scratch.logmel-cnn", "image": "scratch.image-cnn-rgb", "text": "scratch.hashed-text"}
NEW_LABELS = sorted(WORDS)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # the job processes: tiny batches on a busy 2-core machine
        yield


@pytest.fixture(scope="module")
def served(tmp_path_factory, spoken_icons_build):
    tmp = tmp_path_factory.mktemp("newtask")
    data = spoken_icons_build  # 72 rows: 24 train, 24 val, 24 test
    store = open_store(tmp / "ann.db")
    base = make_base(tmp / "base")  # the app's default checkpoint: labels a, b, c
    demo = app.build_demo(str(base), pool=app.PredictorPool(Limits()), store=store, access=Access("local"))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, store, data, tmp
    finally:
        demo.close()


def new_task(client: Client, data: str, encoders: dict, epochs=2, mma_epochs=1, name="") -> dict:
    return client.predict("", "", "", 0.0, "local", "", epochs, mma_epochs, "new", data, encoders, name,
                          api_name="/start_job")  # fmt: skip


def test_the_builder_is_seeded_and_says_its_sources(served, tmp_path):
    _, _, data, _ = served
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    assert sorted({r["label"] for r in rows}) == NEW_LABELS and len(rows) == 3 * 8 * 3
    assert {r["split"] for r in rows} == {"train", "val", "test"} and all(
        {"audio", "image", "text"} <= set(r) for r in rows
    )
    assert {r["meta"]["voice"] for r in rows} == {"ked_diphone", "lp_diphone", "pc_diphone"}
    held_out = {r["meta"]["voice"] for r in rows if r["split"] == "test"}  # a voice no model trains on
    assert held_out == {"pc_diphone"} and "pc_diphone" not in {r["meta"]["voice"] for r in rows if r["split"] != "test"}
    info = json.loads((data / "build_info.json").read_text())
    assert "CC-BY-SA-3.0 or LGPL-3" in info["sources"]["image"] and "Festival" in info["sources"]["audio"]
    from PIL import Image

    with Image.open(data / rows[0]["image"]) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    again = build_spoken_icons(tmp_path / "again", seed=0, takes=3)  # the same seed: the same rows and files
    assert (again / "metadata.jsonl").read_text() == (data / "metadata.jsonl").read_text()
    first = rows[0]
    assert (again / first["image"]).read_bytes() == (data / first["image"]).read_bytes()


def test_a_new_task_from_the_api_trains_and_its_model_predicts_the_new_labels(served):
    demo, store, data, tmp = served
    c = Client(demo.local_url, verbose=False)
    started = new_task(c, str(data), {**ENCODERS, "video": ""})
    assert started["state"] in ("queued", "running") and started["config"]["init_from"] is None
    status = wait_for(finished(c, started["id"]), "the new task's job to finish")
    assert status["state"] == "succeeded", status["error"]
    cfg = status["config"]
    assert cfg["task"] == "spoken-icons" and cfg["encoders"] == ENCODERS
    assert (cfg["epochs"], cfg["mma_epochs"], cfg["batch_size"]) == (2, 1, 8)  # epochs as given, batch by size
    phases = [b["phase"] for b in status["bars"]]
    assert phases == ["unimodal-audio", "unimodal-image", "unimodal-text", "naive", "mma"]  # the whole method
    assert status["metrics"]["chosen"] in ("ume", "mma")  # the UME-MMA choice on validation
    assert {"without_audio", "without_image", "without_text"} <= set(status["after"])
    assert status["checkpoint"] == f"job-{status['id']}"
    from ume_mma.checkpoint import load_config

    config, _ = load_config(JobStore(store).folder(status["id"]) / "out" / "checkpoint")
    assert config.labels == NEW_LABELS and config.task == "spoken-icons"
    c.predict(status["checkpoint"], api_name="/load_model")  # the new checkpoint loads in the running app by name
    row = next(json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines() if '"test"' in x)
    files = handle_file(str(data / row["audio"])), handle_file(str(data / row["image"]))
    out = c.predict(None, *files, row["text"], [], status["checkpoint"], api_name="/predict")
    assert set(out["branches"]) == {"audio", "image", "text"} and out["fused"]["label"] in NEW_LABELS


def test_a_new_task_trains_on_an_annotation_queue(served):
    """The data may be a queue's annotations (exported into the job's folder) instead of a folder."""
    from ume_mma.annotate import AnnotationQueue, import_dataset

    demo, store, data, _ = served
    import_dataset(store, data, "icons")
    queue = AnnotationQueue(store, "icons")
    while (item := queue.next_item("tester")) is not None:
        queue.submit(item.id, item.given_label, "tester")
    c = Client(demo.local_url, verbose=False)
    started = c.predict(annotations="icons", epochs=1, mma_epochs=1, task="new", encoders=ENCODERS,
                        api_name="/start_job")  # fmt: skip
    status = wait_for(finished(c, started["id"]), "the queue's new task to finish")
    assert status["state"] == "succeeded", status["error"]
    assert status["config"]["task"] == "icons" and status["config"]["init_from"] is None
    from ume_mma.checkpoint import load_config

    config, _ = load_config(JobStore(store).folder(status["id"]) / "out" / "checkpoint")
    assert config.labels == NEW_LABELS


def test_a_new_task_that_cannot_work_is_refused_in_words_through_the_api(served, tmp_path):
    demo, store, data, _ = served
    c = Client(demo.local_url, verbose=False)
    before = [j["id"] for j in list_jobs(store)]
    few = tmp_path / "few"
    shutil.copytree(data, few)
    rows = [json.loads(x) for x in (few / "metadata.jsonl").read_text().splitlines()]
    drop = {r["id"] for r in rows if r["label"] == "mouse" and r["split"] == "train"}
    (few / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] not in drop))
    bad = [
        ((str(few), ENCODERS), "too few training examples \\('mouse' has 0"),
        ((str(data), {"audio": ENCODERS["audio"], "image": ENCODERS["image"]}), "has text, which no chosen encoder"),
        ((str(data), {**ENCODERS, "image": "hf.clip-vit-b-32.image"}), "does not load on this server"),
        ((str(data), {**ENCODERS, "video": "video.frames-efficientnet-lite0"}), "has no video"),
        ((str(tmp_path / "missing"), ENCODERS), "missing"),
        ((str(data), "audio"), "encoders must be"),
    ]
    for (folder, encoders), message in bad:
        with pytest.raises(AppError, match=message):
            new_task(c, folder, encoders)
    empty = tmp_path / "empty"
    shutil.copytree(data, empty)
    text = (empty / "metadata.jsonl").read_text().replace('"split": "test"', '"split": "val"')
    (empty / "metadata.jsonl").write_text(text)
    with pytest.raises(AppError, match="the 'test' split is empty"):
        new_task(c, str(empty), ENCODERS)
    with pytest.raises(AppError, match="task is finetune or new"):
        c.predict("", "", "", 0.0, "local", "", 1, 1, "bogus", str(data), ENCODERS, "", api_name="/start_job")
    assert [j["id"] for j in list_jobs(store)] == before, "a refused job leaves no job row"


def test_a_public_app_names_no_folder_on_the_server(tmp_path):
    from ui import train as train_ui

    store = open_store(tmp_path / "ann.db")
    fns = train_ui.handlers(store, Access("local", server_paths=False))
    with pytest.raises(gr.Error, match="does not read folders on the server"):
        fns.start("me", "", "", "", 0.0, "local", "", 1, 1, "new", str(tmp_path), ENCODERS, "")
    assert list_jobs(store) == []


def choose(page, modality: str, name: str) -> None:
    """Pick ``name`` in the Train tab's encoder dropdown of ``modality``."""
    box = page.locator(f"#train-encoder-{modality} input")
    box.click()
    page.get_by_role("option", name=name, exact=True).click()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_the_train_tab_goes_from_a_folder_to_a_served_model_of_a_new_task(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python")
    demo, _, data, _ = served
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(120_000)
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Train").click()
            page.locator("#train-mode").get_by_label("a new task").check()
            expect(page.locator("#train-data textarea")).to_be_visible()
            expect(page.locator("#train-base")).to_be_hidden()  # a new task starts from no checkpoint
            page.locator("#train-data textarea").fill(str(data))
            page.locator("#train-task textarea").fill("spoken icons")
            choose(page, "video", "video.frames-efficientnet-lite0")  # the data has no video: refused in words
            page.locator("#train-start").click()
            expect(page.locator(".toast-wrap")).to_contain_text("has no video", timeout=60_000)  # the error toast
            choose(page, "video", "(leave out)")
            for modality, name in ENCODERS.items():
                choose(page, modality, name)
            page.locator("#train-view").get_by_label("Epochs (uni-modal)").fill("2")
            page.locator("#train-view").get_by_label("Epochs (MMA)").fill("1")
            page.locator("#train-start").click()
            job = re.compile(r"#\d+ · .* · new task spoken icons")  # the job list names the new task
            expect(page.locator("#train-job input")).to_have_value(job, timeout=WAIT_MS)
            expect(page.locator("#train-state")).to_contain_text("succeeded", timeout=WAIT_MS)
            expect(page.locator(".train-bar[data-state=done]")).to_have_count(5, timeout=WAIT_MS)
            table = page.locator("#train-table")
            expect(table).to_contain_text("test split", timeout=WAIT_MS)
            expect(table).to_contain_text("without text", timeout=WAIT_MS)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "train-new-task.png"), full_page=True)
            page.locator("#train-use").click()  # the session now predicts with the new task's model
            expect(page.locator("#checkpoint input")).to_have_value(re.compile(r"^job-\d+$"), timeout=WAIT_MS)
            expect(page.get_by_role("tab", name="Predict")).to_have_attribute("aria-selected", "true")
            page.locator("#text-input textarea").fill("where is the printer")
            page.locator("#text-input textarea").press("Enter")
            labels = re.compile("^(" + "|".join(NEW_LABELS) + ")$")  # an answer among the new task's labels
            expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text(labels, timeout=WAIT_MS)
        finally:
            browser.close()
