"""docs/finetune.md's "Fix a failure in ten minutes", run in the real app and a real browser: the screenshots
docs/walk-*.png and docs/app-train.png come from this script.

    .venv/bin/python docs/walkthrough.py --shift-data data/av-digits-shift --base-data data/av-digits-clean

1. the shipped ``checkpoints/av-digits`` meets digits from a new domain (``python -m ume_mma.data build
   av-digits-shift DIR --shift both``: another handwriting collection, speech over a telephone line);
2. its pool (labels removed) is imported as a queue in the Annotate tab, disagreement first, and K items
   are labelled (one in the browser, the rest through ``/next_item`` + ``/submit_item`` with the true
   labels: a simulated annotator);
3. the Train tab fine-tunes the checkpoint on them (replay of the base data), with progress bars and plot;
4. the before/after table; a held-out sample the base got wrong, before and after "Use this model".
Prints the timings of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from tests.chromium import ARGS, CHROMIUM  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ume_mma.annotate import open_store  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.predictor import Predictor  # noqa: E402

BASE = "checkpoints/av-digits"
FUSED = "#fused-card [data-testid='label-output-value']"
DOCS = ROOT / "docs"


def pool_folder(shift: Path, out: Path, rows: int) -> dict[str, str]:
    """The shift set's pool (its train and val rows, at most ``rows``) without labels or splits, as a user's
    folder of clips would be; returns id -> true label (what the simulated annotator knows)."""
    out.mkdir(parents=True)
    for sub in ("audio", "images"):
        (out / sub).symlink_to((shift / sub).resolve())
    lines, truth = [], {}
    for line in (shift / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") not in ("train", "val") or len(lines) >= rows:
            continue
        truth[row["id"]] = row.pop("label")
        row.pop("split", None)
        lines.append(json.dumps(row))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return truth


def wrong_then_right(shift: Path, before: Predictor, after: Predictor) -> tuple[dict[str, str], str]:
    """A held-out sample (test split) the base checkpoint gets wrong and the fine-tuned one right."""
    for s in load_dataset(shift).split("test").samples:
        inputs = {m: str(s.path(m)) for m in ("image", "audio")}
        if before.predict(inputs).fused.label != s.label and after.predict(inputs).fused.label == s.label:
            return inputs, s.label
    raise SystemExit("no held-out sample that the fine-tune fixed: nothing to show")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shift-data", required=True, help="an av-digits-shift folder (--shift both)")
    ap.add_argument("--base-data", default=None, help="av-digits folder for replay and the base test set")
    ap.add_argument("--k", type=int, default=50, help="annotations to label")
    ap.add_argument("--pool-rows", type=int, default=600, help="pool rows imported as the queue")
    args = ap.parse_args()
    from gradio_client import Client
    from playwright import sync_api

    expect = sync_api.expect
    expect.set_options(timeout=600_000)  # a fine-tune takes minutes on a CPU
    shift = Path(args.shift_data).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    truth = pool_folder(shift, tmp / "my-clips", args.pool_rows)
    store = open_store(tmp / "annotations.db")
    demo = app.build_demo(BASE, store=store, access=Access("local", "you"))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    clock = {"start": time.perf_counter()}
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(demo.local_url)
            # 2. import the clips as a queue, disagreement first; label one in the browser
            page.get_by_role("tab", name="Annotate").click()
            page.get_by_label("Folder with metadata.jsonl (labels optional)").fill(str(tmp / "my-clips"))
            page.get_by_label("Queue name").fill("my-clips")
            page.locator("#ann-import").click()
            expect(page.locator("#ann-progress")).to_contain_text(f"0 of {len(truth)} labelled")
            clock["imported"] = time.perf_counter()
            page.locator("#ann-next").click()
            expect(page.locator("#ann-item")).to_contain_text("branches disagree")
            page.screenshot(path=str(DOCS / "walk-2-annotate.png"), full_page=True)
            client = Client(demo.local_url, verbose=False)
            for _ in range(args.k):
                item = client.predict("my-clips", api_name="/next_item")
                client.predict(item["id"], truth[item["source_id"]], {}, "", "my-clips", api_name="/submit_item")
            clock["annotated"] = time.perf_counter()
            # 3. fine-tune from the Train tab
            page.get_by_role("tab", name="Train").click()
            page.locator("#train-queue input").click()
            page.get_by_role("option", name="my-clips").click()
            expect(page.locator("#train-view")).to_contain_text("total")
            if args.base_data:
                page.locator("#train-base-data textarea, #train-base-data input").first.fill(
                    str(Path(args.base_data).resolve())
                )
            page.locator("#train-start").click()
            try:
                expect(page.locator("#train-state")).to_contain_text("Job", timeout=120_000)
            except AssertionError:
                raise SystemExit(f"the job did not start: {page.locator('.toast-body').all_inner_texts()}") from None
            expect(page.locator(".train-bar[data-state=running]")).to_have_count(1)
            expect(page.locator(".train-bar[data-state=done]")).to_have_count(1)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(DOCS / "walk-3-train.png"), full_page=True)
            expect(page.locator("#train-state")).to_contain_text("succeeded")
            clock["trained"] = time.perf_counter()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(DOCS / "app-train.png"), full_page=True)
            checkpoint = page.locator("#train-state code").last.inner_text().strip()
            # 1 and 4: a held-out failure of the base, then the same sample with the new model
            from ume_mma.jobs import job_checkpoint  # the state line names the job's checkpoint: job-<id>

            folder = job_checkpoint(store, checkpoint)
            before, after = Predictor.from_pretrained(BASE), Predictor.from_pretrained(folder)
            inputs, label = wrong_then_right(shift, before, after)
            page.get_by_role("tab", name="Predict").click()
            page.locator("#image-input input[type=file]").set_input_files(inputs["image"])
            page.locator("#audio-input input[type=file]").set_input_files(inputs["audio"])
            expect(page.locator(FUSED)).not_to_have_text(label)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(DOCS / "walk-1-failure.png"), full_page=True)
            page.get_by_role("tab", name="Train").click()
            page.locator("#train-use").click()
            expect(page.locator("#checkpoint input")).to_have_value(checkpoint)
            page.get_by_role("button", name="Predict", exact=True).click()  # the same inputs, the new model
            expect(page.locator(FUSED)).to_have_text(label)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(DOCS / "walk-4-fixed.png"), full_page=True)
            clock["end"] = time.perf_counter()
            browser.close()
    except AssertionError:
        page.screenshot(path=str(tmp / "failed.png"), full_page=True)
        print(f"failed: see {tmp / 'failed.png'}", flush=True)
        raise
    finally:
        demo.close()
    steps = list(clock.items())
    for (_, t0), (name, t1) in zip(steps, steps[1:], strict=False):
        print(f"{name:>10}: {t1 - t0:6.1f} s")
    print(f"{'total':>10}: {clock['end'] - clock['start']:6.1f} s (true label of the shown sample: {label})")


if __name__ == "__main__":
    main()
