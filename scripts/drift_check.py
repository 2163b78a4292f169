"""Drift check: how a calibrated checkpoint's reliability scores and reliability-aware fusion behave when one
modality's inputs are replaced by drifted versions (noise, inverted, rotated, blurred, thick-stroke and shrunk
images; noise audio; gibberish text).

    python scripts/drift_check.py BASE_CHECKPOINT CALIBRATED_CHECKPOINT DATA_DIR [--split test] [--limit N]

For every drift it prints, on the split's rows with every modality: the accuracy of each branch alone, of the
base checkpoint's fusion and of the calibrated one, the mean reliability of the drifted branch, the share flagged
``off_distribution``, and the AUROC of that branch's reliability between clean and drifted inputs. Nothing here
is fitted: it only measures (the calibrated checkpoint was fitted on train/validation by ``ume_mma.calibrate``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageFilter, ImageOps  # noqa: E402

from ume_mma.calibrate import split_features  # noqa: E402
from ume_mma.checkpoint import from_pretrained  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.decode import Decoder  # noqa: E402
from ume_mma.features import load_raw  # noqa: E402
from ume_mma.io import Audio  # noqa: E402
from ume_mma.reliability import auroc  # noqa: E402

RNG = np.random.default_rng(0)


def _noise_image(img: Image.Image) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (img.height, img.width, 3), dtype=np.uint8)).convert(img.mode)


def _shrunk(img: Image.Image) -> Image.Image:
    """The image at half size, centred on a canvas of its background (its corner pixel's colour)."""
    small = img.resize((img.width // 2, img.height // 2))
    canvas = Image.new(img.mode, img.size, img.getpixel((0, 0)))
    canvas.paste(small, (img.width // 4, img.height // 4))
    return canvas


def _noise_audio(clip: Audio) -> Audio:
    return Audio((0.1 * RNG.standard_normal(len(clip.samples))).astype(np.float32), clip.sample_rate)


DRIFTS: dict[str, dict[str, Callable]] = {
    "image": {
        "noise": _noise_image,
        "inverted": lambda im: ImageOps.invert(im.convert("RGB")).convert(im.mode),
        "rotated 90": lambda im: im.rotate(90),
        "blurred": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
        "thick strokes": lambda im: im.filter(ImageFilter.MaxFilter(3)),
        "shrunk": lambda im: _shrunk(im),
    },
    "audio": {"noise": _noise_audio},
    "text": {"gibberish": lambda text: "".join(RNG.choice(list("qxzjkvwy "), size=max(8, len(text))))},
}


@torch.no_grad()
def drifted_features(model, samples, modality: str, drift: Callable) -> torch.Tensor:
    """Encoder outputs ``[N, D]`` of the drifted inputs of ``samples`` (all must have ``modality``)."""
    enc = model.encoders[modality]
    decoder = Decoder.for_encoders({modality: enc})
    out = []
    for start in range(0, len(samples), 128):
        raws = [drift(load_raw(s, modality, decoder)) for s in samples[start : start + 128]]
        out.append(enc(enc.preprocess(raws)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def scores(model, feats: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, object]:
    ones = {m: torch.ones(len(y), dtype=torch.bool) for m in feats}
    out = model.forward_features(feats, ones)
    acc = {f"{m} alone": float((out.branches[m].argmax(-1) == y).float().mean()) for m in out.branches}
    return acc | {"fused": float((out.fused.argmax(-1) == y).float().mean()), "reliability": out.reliability}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base")
    ap.add_argument("calibrated")
    ap.add_argument("data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cache-dir", default="~/.cache/ume_mma/features")
    ap.add_argument("--out", default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    base, cal = from_pretrained(args.base), from_pretrained(args.calibrated)
    samples = [
        s for s in load_dataset(args.data).split(args.split).samples if all(getattr(s, m) for m in cal.modalities)
    ]
    samples = samples[: args.limit]
    clean = split_features(cal, samples, args.cache_dir, args.split)
    y = clean.targets
    ref = scores(cal, clean.feats, y)
    rows = [{"drift": "none"} | scores(base, clean.feats, y) | {"fused (calibrated)": ref["fused"]}]
    for m in [m for m in cal.modalities if m in DRIFTS]:
        for name, drift in DRIFTS[m].items():
            feats = clean.feats | {m: drifted_features(cal, samples, m, drift)}
            b, c = scores(base, feats, y), scores(cal, feats, y)
            r_clean, r_drift = ref["reliability"][m], c["reliability"][m]
            rows.append(
                {"drift": f"{m}: {name}"} | {k: v for k, v in b.items() if k != "reliability"}
                | {"fused (calibrated)": c["fused"], "reliability": float(r_drift.mean()),
                   "off_distribution": float((r_drift < 0.5).float().mean()), "auroc": auroc(r_clean, r_drift)}
            )  # fmt: skip
    rows[0].pop("reliability", None)
    rows[0] |= {f"reliability {m}": float(r.mean()) for m, r in ref["reliability"].items()}
    rows[0] |= {f"off {m}": float((r < 0.5).float().mean()) for m, r in ref["reliability"].items()}
    print(
        f"{len(y)} rows of {args.data} ({args.split}); base fusion {base.config.fusion}, calibrated {cal.config.fusion}"
    )
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
