"""The Annotate tab's *Import your data* panel in a real browser (Playwright driving Debian's Chromium): the
importer chosen in its dropdown, a zip of class subfolders uploaded, a new dataset folder and a queue made, the
summary on screen, and the queue's new labels among the label choices. Saves tests/artifacts/import.png."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.chromium import ARGS, CHROMIUM  # noqa: E402

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python (pip install playwright)")

from tests.test_app_import import launch  # noqa: E402
from tests.test_browser import ARTIFACTS  # noqa: E402
from tests.test_imports import make_class_folders  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.home import datasets_root  # noqa: E402


def test_the_import_panel_uploads_a_zip_into_a_dataset_and_a_queue(tmp_path):
    make_class_folders(tmp_path / "clips", splits=False)  # a/, b/, c/: two samples each (png + wav, + txt for a)
    zipped = shutil.make_archive(str(tmp_path / "clips"), "zip", tmp_path / "clips")
    demo, store = launch(tmp_path / "app", Access("local", "ada"))
    expect = sync_api.expect
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                page.set_default_timeout(60_000)
                page.goto(demo.local_url)
                page.get_by_role("tab", name="Annotate").click()
                page.get_by_text("Import your data: a folder, CSV").click()  # open the panel
                page.locator("#imp-kind input").click()
                page.get_by_role("option", name="class subfolders").click()
                page.locator("#imp-uploads input[type=file]").set_input_files(zipped)
                expect(page.locator("#imp-uploads")).to_contain_text("clips.zip")
                page.locator("#imp-dataset textarea, #imp-dataset input").first.fill("letters")
                page.locator("#imp-queue textarea, #imp-queue input").first.fill("letters")
                page.locator("#imp-run").click()
                status = page.locator("#imp-status")
                expect(status).to_contain_text("Imported 6 rows into dataset letters and queue letters")
                expect(status).to_contain_text("Labels: a (2), b (2), c (2)")
                expect(status).to_contain_text("are new to checkpoint checkpoints/av-digits")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "import.png"), full_page=True)
                expect(page.locator("#ann-queue input")).to_have_value("letters")  # the new queue is chosen
                page.locator("#ann-next").click()
                expect(page.locator("#ann-progress")).to_contain_text("0 of 6 labelled")
                for label in ("a", "b", "c", "7"):  # the new labels and the checkpoint's
                    expect(page.locator(f"#ann-label input[value='{label}']")).to_have_count(1)
                page.locator("#ann-label input[value='a']").check()
                page.locator("#ann-submit").click()
                expect(page.locator("#ann-progress")).to_contain_text("1 of 6 labelled")
            finally:
                browser.close()
    finally:
        demo.close()
    assert len(load_dataset(datasets_root(store.media.root) / "letters")) == 6
