"""Regenerate the screenshots of the README and the docs (docs/*.png) from the real app on checkpoints/av-digits.

.venv/bin/python docs/make_screenshots.py      # needs Debian chromium (scripts/setup.sh installs it)
.venv/bin/python docs/make_screenshots.py live # only docs/app-live.png
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from tests.chromium import ARGS, CHROMIUM  # noqa: E402

FUSED = "#fused-card [data-testid='label-output-value']"


def main() -> None:
    from playwright import sync_api

    demo = app.build_demo("checkpoints/av-digits")
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo.local_url)
            page.get_by_text("they disagree").click()  # image 2 + spoken "cinco"
            sync_api.expect(page.locator(FUSED)).to_have_text("2", timeout=30000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ROOT / "docs" / "app.png"), full_page=True)
            page.locator("#toggles").get_by_label("image").click()
            sync_api.expect(page.locator(FUSED)).to_have_text("5", timeout=30000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ROOT / "docs" / "app-image-off.png"), full_page=True)
            page.get_by_role("tab", name="Robustness").click()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(ROOT / "docs" / "app-robustness.png"), full_page=True)
            page.get_by_role("tab", name="Predict").click()
            page.locator("#toggles").get_by_label("image").click()  # the image back on
            page.get_by_text("another handwriting collection").click()  # a 3 of OpenCV's digits + spoken 3
            sync_api.expect(page.locator("#image-card")).to_contain_text("off its training", timeout=30000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ROOT / "docs" / "app-drift.png"), full_page=True)
            page.locator("#checkpoint input").click()
            page.get_by_role("option", name="checkpoints/emoji-vl").click()  # image + text, its own examples
            sync_api.expect(page.locator("#examples")).to_contain_text("text alone", timeout=30000)
            page.get_by_text("they disagree").click()
            sync_api.expect(page.locator("#text-card")).to_contain_text("%", timeout=30000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ROOT / "docs" / "app-emoji-vl.png"), full_page=True)
            browser.close()
    finally:
        demo.close()


def annotate_screenshot() -> None:
    """docs/app-annotate.png: the Annotate tab on a queue of three unlabelled assets (as the browser test)."""
    import tempfile

    from playwright import sync_api

    from tests.test_app_annotate import launch
    from ui.annotate import Access

    demo, _ = launch(Path(tempfile.mkdtemp()), Access("local", "alice"))
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Annotate").click()
            page.locator("#ann-next").click()
            sync_api.expect(page.locator("#ann-item")).to_contain_text("branches disagree", timeout=30000)
            page.locator("#ann-flags-audio").get_by_label("irrelevant").check()
            page.locator("#ann-note textarea").fill("the speech says five, the digit is a 2")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ROOT / "docs" / "app-annotate.png"), full_page=True)
            browser.close()
    finally:
        demo.close()


def team_screenshots() -> None:
    """docs/app-agreement.png and docs/app-review.png: the Annotate tab's Agreement and Review panels on a
    queue that three annotators labelled with overlap 2 (as the browser test does)."""
    import shutil
    import subprocess

    run = [sys.executable, "-m", "pytest", "-q", "tests/test_browser.py", "-k", "agreement_table"]
    subprocess.run(run, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for name in ("agreement", "review"):
        shutil.copyfile(ROOT / "tests" / "artifacts" / f"{name}.png", ROOT / "docs" / f"app-{name}.png")


def live_screenshot() -> None:
    """docs/app-live.png: the Live tab with Chromium's fake camera on a handwritten 7 and a fake microphone saying
    "seven" (the files the browser test makes from assets/)."""
    import tempfile

    from playwright import sync_api

    from tests import fakedevices as fake

    tmp = Path(tempfile.mkdtemp())
    video, audio = fake.camera(tmp / "7.y4m", fake.DIGIT_7), fake.microphone(tmp / "7.wav", fake.SPEECH_7)
    demo = app.build_demo("checkpoints/av-digits")
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + fake.chromium_args(video, audio))
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Live").click()
            page.locator("#live-cam").get_by_text("Click to Access Webcam").click()
            page.locator("#live-cam button", has_text="Record").click()
            page.locator("#live-mic button.record-button").click()
            top = "#live-{}-card [data-testid='label-output-value']"
            for card in ("fused", "image", "audio"):
                sync_api.expect(page.locator(top.format(card))).to_have_text("7", timeout=30000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ROOT / "docs" / "app-live.png"), full_page=True)
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["live"]:  # only the Live tab's screenshot
        live_screenshot()
        sys.exit()
    main()
    live_screenshot()
    annotate_screenshot()
    team_screenshots()
