"""The app in a real browser: Playwright for Python driving Debian's /usr/bin/chromium.

Uploads an image and an audio file, waits for the fused card, switches a modality off and checks that
the fused card now gives the remaining branch's answer. Saves tests/artifacts/browser.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.chromium import ARGS, CHROMIUM  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python (pip install playwright)")

import app  # noqa: E402
from tests.test_app import train_tiny  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    ref = str(train_tiny(root))
    pool = app.PredictorPool(Limits())
    demo = app.build_demo(ref, pool=pool)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url, pool.get(ref).predictor, root / "data"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(served[0])
            yield page
        finally:
            browser.close()


def top_label(page, card: str) -> str:
    return page.locator(f"#{card}-card [data-testid='label-output-value']").inner_text().strip()


def test_switching_a_modality_off_updates_the_fused_card(served, page):
    _, predictor, data = served
    image, audio = data / "images" / "test-a-0.png", data / "audio" / "test-c-0.wav"
    expect = sync_api.expect
    page.locator("#image-input input[type=file]").set_input_files(str(image))
    page.locator("#audio-input input[type=file]").set_input_files(str(audio))
    both = predictor.predict({"image": str(image), "audio": str(audio)})
    expect(page.locator("#audio-card [data-testid='label-output-value']")).to_have_text(both.branches["audio"].label)
    expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text(both.fused.label)
    assert top_label(page, "image") == both.branches["image"].label

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.locator("#toggles").get_by_label("image").click()  # only the audio branch is left
    only_audio = predictor.predict({"image": str(image), "audio": str(audio)}, ["audio"])
    expect(page.locator("#image-card")).to_contain_text("image · off")
    expect(page.locator("#image-card [data-testid='label-output-value']")).to_have_text("off")  # no answer
    expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text(only_audio.fused.label)
    expect(page.locator("#sources")).to_contain_text("switched off")
    expect(page.locator("#chart")).not_to_contain_text("image branch")
    assert not [u for u in requests if "/queue/" in u or "/run/" in u], requests  # the toggle ran in the browser
    page.locator("#toggles").get_by_label("image").click()  # back on: the fused answer of both again
    expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text(both.fused.label)
    expect(page.locator("#chart")).to_contain_text("image branch")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


PREVIEW = """() => { const v = document.querySelector('#video-preview video');
  return v ? {src: v.src, duration: v.duration, muted: v.muted, ready: v.readyState} : null; }"""


def test_an_uploaded_video_plays_in_its_preview_and_ffmpeg_wasm_is_never_fetched(served, page, tmp_path):
    """The video input is a file input plus a non-interactive player: the clip plays (with its sound, not muted)
    and the page never fetches ffmpeg.wasm (31 MB), which Gradio's interactive gr.Video loads for its trimming
    tool on the first upload, before the answer could be drawn."""
    from tests.media import make_video

    url, predictor, _ = served
    video = make_video(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48), fps=10)
    page = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # no inputs left by other tests
    page.set_default_timeout(30_000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.locator("#video-input input[type=file]").set_input_files(str(video))
    expect = sync_api.expect
    expect(page.locator("#sources")).to_contain_text("frames sampled from video clip.mp4")
    expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text(
        predictor.predict({"video": str(video)}).fused.label
    )
    expect(page.locator("#video-preview video")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#video-preview video').readyState >= 1")
    shown = page.evaluate(PREVIEW)
    assert shown["src"].endswith("/clip.mp4") and abs(shown["duration"] - 3.0) < 0.2 and not shown["muted"], shown
    assert not [u for u in requests if "ffmpeg" in u], [u for u in requests if "ffmpeg" in u]
    page.locator("#video-input button[aria-label='Clear']").click()  # cleared: the player goes with it
    expect(page.locator("#video-preview video")).to_be_hidden()
    page.close()


def test_a_checkpoint_brings_its_examples_and_a_video_example_shows_its_frames(page):
    """The tiny checkpoint has no examples; choosing the shipped av-digits one shows its examples."""
    sync_api.expect(page.locator("#examples")).to_be_hidden()
    page.locator("#checkpoint input").click()
    page.get_by_role("option", name="checkpoints/av-digits").click()
    sync_api.expect(page.locator("#examples")).to_contain_text("video with sound")
    page.get_by_text("video with sound").click()  # an example of the av-digits task in assets/examples.json
    frames = page.locator("#frames img")
    sync_api.expect(frames).to_have_count(8)
    sync_api.expect(page.locator("#sources")).to_contain_text("soundtrack of video video_3.mp4")
    page.wait_for_function("() => (document.querySelector('#video-preview video') || {}).src?.endsWith('video_3.mp4')")
    page.screenshot(path=str(ARTIFACTS / "browser_video.png"), full_page=True)


def test_annotating_a_queue_item_moves_the_progress_count(page, tmp_path):
    """The Annotate tab in a real browser: next item (the disagreeing one first), label with a key, submit,
    and the progress line counts it. Saves tests/artifacts/annotate.png (the README's screenshot)."""
    from tests.test_app_annotate import launch
    from ui.annotate import Access

    demo, store = launch(tmp_path, Access("local"))
    try:
        if True:  # the module's browser, a new tab
            page = page.context.browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(30_000)
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Annotate").click()
            page.locator("#ann-next").click()
            expect = sync_api.expect
            expect(page.locator("#ann-item")).to_contain_text("branches disagree")
            expect(page.locator("#ann-progress")).to_contain_text("0 of 3 labelled")
            expect(page.locator("#ann-label input[value='2']")).to_be_checked()  # pre-filled: the fused answer
            page.locator("#ann-note textarea").fill("the speech says five")
            page.locator("#ann-note textarea").blur()
            page.keyboard.press("3")  # shortcut: the 3rd label ("2")
            page.keyboard.press("Enter")  # shortcut: submit
            expect(page.locator("#ann-progress")).to_contain_text("1 of 3 labelled")
            expect(page.locator("#ann-item")).to_contain_text("branches agree")  # the next item is on screen
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "annotate.png"), full_page=True)
            page.close()
    finally:
        demo.close()
    assert store.counts()["annotations"] == 1


def test_the_agreement_table_and_the_review_view(page, tmp_path):
    """The Annotate tab's team panels in a real browser, as a reviewer sees them (here the local user, an
    admin): the agreement line and tables, the items whose labels disagree, a resolution and its history.
    Saves tests/artifacts/agreement.png and review.png."""
    from tests.test_app_annotate_team import TRUE, labelled_team_app
    from ui.annotate import Access
    from ume_mma.annotate.agreement import queue_agreement
    from ume_mma.annotate.review import review_items

    demo, store = labelled_team_app(tmp_path, Access("local", "rita"))
    expect = sync_api.expect
    try:
        page = page.context.browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(30_000)
        page.goto(demo.local_url)
        page.get_by_role("tab", name="Annotate").click()
        page.locator("#ann-agreement .label-wrap").first.click()
        page.locator("#ann-agree-refresh").click()
        alpha = queue_agreement(store, "team")["krippendorff_alpha"]
        expect(page.locator("#ann-agreement-line")).to_contain_text(f"Krippendorff's alpha {alpha} on 6 items")
        expect(page.locator("#ann-agree-annotators")).to_contain_text("bob")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#ann-agreement").screenshot(path=str(ARTIFACTS / "agreement.png"))
        page.locator("#ann-review-panel .label-wrap").first.click()
        page.locator("#ann-review-load").click()
        first = review_items(store, "team")[0]  # the slips of MISTAKES make some items disagree
        labels = " · ".join(f"{a['annotator']}: {a['label']}" for a in first["annotations"])
        expect(page.locator("#ann-review")).to_contain_text(labels)
        expect(page.locator("#ann-history")).to_contain_text("note of")  # the first item's history, loaded with it
        truth = TRUE[first["source_id"]]
        page.locator("#ann-review-label input").click()
        page.get_by_role("option", name=truth, exact=True).click()
        page.locator("#ann-review-note textarea").fill("checked the image and the speech")
        page.locator("#ann-resolve").click()
        expect(page.locator("#ann-review-status")).to_contain_text(
            f"Item {first['item_id']} resolved as {truth} by rita"
        )
        expect(page.locator("#ann-history")).to_contain_text("resolve")
        page.locator("#ann-review-panel").screenshot(path=str(ARTIFACTS / "review.png"))
        page.close()
    finally:
        demo.close()
    with store.transaction() as conn:
        from ume_mma.annotate import schema

        assert [(r.item_id, r.label) for r in conn.execute(schema.resolutions.select())] == [(first["item_id"], truth)]


def test_the_drift_example_shows_an_off_distribution_image_card(page):
    """The shipped av-digits checkpoint is calibrated: its drift example (a digit of another handwriting
    collection + clean speech) shows the image card as off its training distribution, the audio card not; both
    cards show their estimate and weight, the audio branch (more likely right) at weight 1."""
    expect = sync_api.expect
    page.locator("#checkpoint input").click()
    page.get_by_role("option", name="checkpoints/av-digits").click()
    page.get_by_text("another handwriting collection").click()
    expect(page.locator("#image-card")).to_contain_text("off its training distribution", timeout=60_000)
    # each card: its estimated chance of being right and its weight in the fused answer (fusion by correctness)
    expect(page.locator("#image-card")).to_contain_text("% right · weight")
    expect(page.locator("#audio-card")).to_contain_text("audio · est. ")
    expect(page.locator("#audio-card")).to_contain_text("weight 1.00 · reliability")
    expect(page.locator("#audio-card")).not_to_contain_text("off its training distribution")
    expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text("3")
    expect(page.locator("#sources")).to_contain_text("off its training distribution")
    page.screenshot(path=str(ARTIFACTS / "browser_drift.png"), full_page=True)
