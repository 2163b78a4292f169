"""Head-only epoch speed-up from feature caching (frozen pre-trained encoders).

    python bench/bench_feature_cache.py [--data data/av-digits-hard] [--n 512]

Times one training epoch of a late-fusion head over ``n`` training samples in two ways: (a) running
the frozen encoders on every batch (what training would cost without the cache; the decoded,
preprocessed inputs are already in memory, so decoding is not counted), and (b) reading the cached
encoder outputs, which is what ``ume_mma.train`` does. ``--save`` writes bench/results/feature_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.features import ModalityInputs, _preprocess_all  # noqa: E402
from ume_mma.models import ModelConfig, MultiModalModel  # noqa: E402
from ume_mma.registry import create_encoder, get_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = {"image": "packaged.efficientnet-lite0", "audio": "packaged.whisper-tiny-en"}


def epoch(
    model: MultiModalModel, opt, inputs: dict[str, ModalityInputs], y: torch.Tensor, cached: bool, bs: int
) -> float:
    t = time.perf_counter()
    for start in range(0, len(y), bs):
        idx = torch.arange(start, min(start + bs, len(y)))
        if cached:
            feats = {m: x.data[idx] for m, x in inputs.items()}
        else:
            with torch.no_grad():
                feats = {m: model.encoders[m](x.rows(idx)) for m, x in inputs.items()}
        out = model.forward_features(feats, {m: x.present[idx] for m, x in inputs.items()})
        loss = torch.nn.functional.cross_entropy(out.fused, y[idx])
        loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "av-digits-hard"))
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--save", action="store_true", help="write the results file (--out); default: print only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "feature_cache.json"))
    args = ap.parse_args()
    samples = [s for s in load_dataset(args.data).samples if s.split == "train"][: args.n]
    labels = sorted({s.label for s in samples})
    y = torch.tensor([labels.index(s.label) for s in samples])
    config = ModelConfig(
        task="bench",
        labels=labels,
        fusion="mma",
        fill="zero",
        encoders={m: get_spec(e).to_dict() for m, e in ENCODERS.items()},
    )
    model = MultiModalModel(config)
    model.load_encoder_weights()
    model.eval()
    raw = {
        m: ModalityInputs(*_preprocess_all(samples, m, create_encoder(get_spec(e)), m, frozen=False), is_features=False)
        for m, e in ENCODERS.items()
    }
    t = time.perf_counter()
    cached = {
        m: ModalityInputs(*_preprocess_all(samples, m, model.encoders[m], m, frozen=True), is_features=True)
        for m in ENCODERS
    }
    fill_s = time.perf_counter() - t
    opt = torch.optim.AdamW(model.heads.parameters(), lr=1e-3)
    slow = epoch(model, opt, raw, y, cached=False, bs=args.batch_size)
    fast = min(epoch(model, opt, cached, y, cached=True, bs=args.batch_size) for _ in range(3))
    result = {
        "n": len(y),
        "encoders": ENCODERS,
        "epoch_running_encoders_s": slow,
        "epoch_cached_features_s": fast,
        "speedup": slow / fast,
        "one_time_feature_pass_s": fill_s,
        "threads": torch.get_num_threads(),
    }
    if args.save:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| head-only epoch, {len(y)} samples | seconds |\n|---|---|\n| running the frozen encoders | {slow:.2f} |\n"
        f"| cached features | {fast:.4f} |\n| speed-up | {slow / fast:.0f}x (goal >= 20x) |"
    )


if __name__ == "__main__":
    main()
