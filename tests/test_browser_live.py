"""The Live tab in a real browser: Chromium with a fake camera and microphone playing files made from the shipped
examples (tests/fakedevices.py), on the shipped av-digits checkpoint.

- a camera on a handwritten 7 and a voice saying "seven": the cards show 7 within a second of pressing record
  (timed inside the page);
- the camera on black frames (a covered lens): the image branch is *missing* and the fused answer is the audio
  branch's;
- a silent microphone: the audio branch is *missing* and the fused answer is the image branch's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests import fakedevices as fake  # noqa: E402
from tests.chromium import ARGS, CHROMIUM  # noqa: E402

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python (pip install playwright)")

import app  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOP = "#live-{}-card [data-testid='label-output-value']"

# Press record on the camera and the microphone; resolve with the ms until the fused card shows ``want``.
START_JS = """async (want) => {
  const card = () => document.querySelector("#live-fused-card [data-testid='label-output-value']");
  const cam = [...document.querySelectorAll('#live-cam button')].find((b) => b.innerText.includes('Record'));
  const t0 = performance.now();
  cam.click();
  document.querySelector('#live-mic button.record-button').click();
  return await new Promise((resolve) => {
    const check = () => {
      if (card() && card().innerText.trim() === want) resolve(performance.now() - t0);
      else if (performance.now() - t0 > 20000) resolve(-1);
      else requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  });
}"""


@pytest.fixture(scope="module")
def url():
    demo = app.build_demo("checkpoints/av-digits")
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


def open_live(p, url: str, video: Path, audio: Path):
    """A browser whose camera plays ``video`` and microphone ``audio``, on the Live tab with the camera on."""
    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + fake.chromium_args(video, audio))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-cam").get_by_text("Click to Access Webcam").click()
    sync_api.expect(page.locator("#live-cam button", has_text="Record")).to_be_visible()
    return browser, page


def test_live_cards_show_the_digit_within_a_second(url, tmp_path):
    video, audio = fake.camera(tmp_path / "7.y4m", fake.DIGIT_7), fake.microphone(tmp_path / "7.wav", fake.SPEECH_7)
    with sync_api.sync_playwright() as p:
        browser, page = open_live(p, url, video, audio)
        try:
            ms = page.evaluate(START_JS, "7")
            assert 0 <= ms <= 1000, f"the fused card showed 7 after {ms:.0f} ms (-1: never)"
            assert page.locator(TOP.format("image")).inner_text().strip() == "7"
            sync_api.expect(page.locator(TOP.format("audio"))).to_have_text("7", timeout=5000)  # the window fills
            sync_api.expect(page.locator("#live-status")).to_contain_text("image: present")
            sync_api.expect(page.locator("#live-sources")).to_contain_text("frame-")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
            # Snapshot: the window goes to the Predict tab, which predicts on it
            page.locator("#live-snapshot").click()
            sync_api.expect(page.locator("#fused-card [data-testid='label-output-value']")).to_have_text("7")
            sync_api.expect(page.locator("#sources")).to_contain_text("frame.png")
        finally:
            browser.close()


def test_black_frames_make_the_image_branch_missing(url, tmp_path):
    video, audio = fake.camera(tmp_path / "black.y4m", None), fake.microphone(tmp_path / "7.wav", fake.SPEECH_7)
    with sync_api.sync_playwright() as p:
        browser, page = open_live(p, url, video, audio)
        try:
            page.locator("#live-cam button", has_text="Record").click()
            page.locator("#live-mic button.record-button").click()
            sync_api.expect(page.locator("#live-image-card")).to_contain_text("missing (black frame)")
            sync_api.expect(page.locator(TOP.format("audio"))).to_have_text("7", timeout=10_000)
            sync_api.expect(page.locator(TOP.format("fused"))).to_have_text("7")  # the fused answer follows the audio
            assert "image" not in page.locator("#live-chart").inner_text()  # no image branch was fed
            sync_api.expect(page.locator("#live-status")).to_contain_text("image: missing (black frame)")
        finally:
            browser.close()


def test_a_silent_microphone_makes_the_audio_branch_missing(url, tmp_path):
    video, audio = fake.camera(tmp_path / "7.y4m", fake.DIGIT_7), fake.microphone(tmp_path / "mute.wav", None)
    with sync_api.sync_playwright() as p:
        browser, page = open_live(p, url, video, audio)
        try:
            page.locator("#live-cam button", has_text="Record").click()
            page.locator("#live-mic button.record-button").click()
            sync_api.expect(page.locator("#live-audio-card")).to_contain_text("missing (silence)", timeout=10_000)
            sync_api.expect(page.locator(TOP.format("image"))).to_have_text("7")
            sync_api.expect(page.locator(TOP.format("fused"))).to_have_text("7")  # the fused answer follows the image
            sync_api.expect(page.locator("#live-status")).to_contain_text("audio: missing (silence)")
            assert "audio branch" not in page.locator("#live-chart").inner_text()
        finally:
            browser.close()
