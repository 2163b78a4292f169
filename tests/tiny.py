"""A tiny, learnable multi-modal dataset made of real files (PNG images, WAV tones, text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

LABELS = ["a", "b", "c"]
FREQS = {"a": 300.0, "b": 700.0, "c": 1500.0}
WORDS = {"a": "apple apricot", "b": "banana berry", "c": "cherry citrus"}


def digit_image(label: str, rng: np.random.Generator, size: int = 28) -> Image.Image:
    """A noisy image whose bright band position encodes the label."""
    arr = rng.normal(40, 20, (size, size))
    band = LABELS.index(label) * size // len(LABELS)
    arr[:, band : band + size // len(LABELS)] += 150
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def tone_clip(label: str, rng: np.random.Generator, sample_rate: int = 8000) -> np.ndarray:
    t = np.arange(int(0.8 * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * FREQS[label] * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)


def make_tiny_dataset(
    root: str | Path, per_label: dict[str, int] | None = None, seed: int = 0, with_text: bool = False
) -> Path:
    """Write ``root/metadata.jsonl`` with image + audio (+ text) samples over train/val/test."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    per_label = per_label or {"train": 12, "val": 4, "test": 4}
    rows = []
    for split, n in per_label.items():
        for label in LABELS:
            for i in range(n):
                sid = f"{split}-{label}-{i}"
                digit_image(label, rng).save(root / "images" / f"{sid}.png")
                sf.write(root / "audio" / f"{sid}.wav", tone_clip(label, rng), 8000)
                row = {
                    "id": sid,
                    "label": label,
                    "split": split,
                    "image": f"images/{sid}.png",
                    "audio": f"audio/{sid}.wav",
                }
                if with_text:
                    row["text"] = WORDS[label]
                rows.append(row)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def make_noise_shift(base: str | Path, out: str | Path, seed: int = 1) -> Path:
    """A shifted copy of ``base``'s test split (the layout ``python -m ume_mma.data build shifted`` writes): every
    image replaced by uniform noise, the audio files and labels kept; ``meta.shifted = "image"``."""
    base, out = Path(base), Path(out)
    (out / "shifted").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for line in (base / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") != "test":
            continue
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(
            out / "shifted" / f"{row['id']}.png"
        )
        (out / row["audio"]).write_bytes((base / row["audio"]).read_bytes())
        rows.append(row | {"image": f"shifted/{row['id']}.png", "meta": {"shifted": "image"}})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def train_tiny_model(root: Path, text: bool = False) -> Any:
    """A real two-branch MMA model (scratch image CNN + log-mel CNN, learned missing tokens; ``text``: a third,
    hashed-text branch, for a dataset made ``with_text``) trained for a few seconds on the tiny dataset at
    ``root``: 60 steps of full-batch Adam, modality dropout on odd steps, the fused loss plus every branch's own
    loss (each branch learns alone too). Returned in eval mode."""
    import torch

    from ume_mma.data.format import load_dataset
    from ume_mma.evaluate import targets_of
    from ume_mma.features import prepare
    from ume_mma.models import ModelConfig, MultiModalModel
    from ume_mma.registry import get_spec

    encoders = {"image": get_spec("scratch.image-cnn").to_dict(), "audio": get_spec("scratch.logmel-cnn").to_dict()}
    if text:
        encoders["text"] = get_spec("scratch.hashed-text").to_dict()
    torch.manual_seed(0)
    model = MultiModalModel(ModelConfig(task="tiny", labels=LABELS, encoders=encoders, fusion="mma", fill="token"))
    train = load_dataset(root).split("train").samples
    inputs = {m: prepare(train, m, model.encoders[m], None) for m in model.modalities}
    y = targets_of(train, model.labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for step in range(60):
        present = {m: torch.rand(len(y), generator=g) > (0.3 if step % 2 else 0.0) for m in model.modalities}
        present["audio"] |= ~present["image"]
        out = model({m: x.data for m, x in inputs.items()}, present)
        loss = torch.nn.functional.cross_entropy(out.fused, y)
        for m in model.modalities:
            loss = loss + torch.nn.functional.cross_entropy(out.branches[m], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
