"""A replay memory a checkpoint carries: a few hundred of its training rows, ready for the encoders, so that a
fine-tune keeps the base's skills when nobody has the base's data folder.

``replay.safetensors`` in a checkpoint folder holds, per modality, what training reads for those rows — the encoder
outputs of a frozen encoder (``Tensor[N, D]``), the preprocessed inputs of a trainable one — with the presence mask,
the rows' label indices and ``heldout`` (``BoolTensor[N]``): rows of the dataset's validation split, which the
checkpoint never trained on. A fine-tune never trains on those: the branch guard and the fusion choice score the
base and the fine-tuned copies there (:mod:`ume_mma.branchguard`), where the base is as right as it is on new
inputs of its own domain, not ~100% as on its training rows. Its metadata records the encoder spec each modality
was prepared with (a memory whose spec differs from the checkpoint's is not used), the source dataset and its
licence. A fine-tune without ``base_data`` mixes its training rows into its own like replay
(``TrainConfig.replay_memory``, on by default);
``python -m ume_mma.replaymemory CHECKPOINT DATA [--rows N] [--heldout-rows N]`` writes one from the checkpoint's
training data (train rows from its train split, held-out rows from its validation split).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ume_mma.errors import UmeMmaError
from ume_mma.features import ModalityInputs

FILE = "replay.safetensors"
DEFAULT_ROWS = 300
DEFAULT_HELDOUT_ROWS = 200
HELDOUT_SPLIT = "val"


class Memory(NamedTuple):
    """A loaded memory: ``inputs`` (modality -> inputs of ``N`` rows), ``targets`` ``Tensor[N]``, ``heldout``
    ``BoolTensor[N]`` (rows the checkpoint never trained on: scored, never trained on) and the file's metadata."""

    inputs: dict[str, ModalityInputs]
    targets: torch.Tensor
    heldout: torch.Tensor
    meta: dict[str, str]

    def part(self, heldout: bool) -> tuple[dict[str, ModalityInputs], torch.Tensor]:
        """The training rows (``heldout=False``) or the held-out rows: ``(inputs, targets)``."""
        from ume_mma.features import take

        index = (self.heldout == heldout).nonzero().flatten()
        return {m: take(x, index) for m, x in self.inputs.items()}, self.targets[index]


def _pick(samples: list[Any], labels: list[str], rows: int, seed: int) -> list[Any]:
    """About ``rows`` samples, the same number per label (seeded), in file order."""
    by_label: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_label.setdefault(s.label, []).append(i)
    rng, per = random.Random(seed), max(1, rows // max(1, len(labels)))
    picked = []
    for label in labels:
        rows_of = by_label.get(label, [])
        picked += rng.sample(rows_of, min(per, len(rows_of)))
    return [samples[i] for i in sorted(picked)]


def build(
    model: Any,
    data_dir: str | Path,
    rows: int = DEFAULT_ROWS,
    seed: int = 0,
    heldout_rows: int = DEFAULT_HELDOUT_ROWS,
    licence: str = "",
    cache: Path | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a memory of about ``rows`` rows of ``data_dir``'s train split and
    ``heldout_rows`` of its validation split (none where it has no such split), prepared for ``model``'s encoders;
    ``licence``: what the rows may be used under (stated in the metadata and the fine-tune's model card)."""
    from ume_mma.data.format import load_dataset
    from ume_mma.evaluate import targets_of
    from ume_mma.features import prepare

    data = load_dataset(data_dir)
    samples = _pick(data.split("train").samples, model.labels, rows, seed)
    held = []
    if heldout_rows > 0 and HELDOUT_SPLIT in data.splits:
        held = _pick(data.split(HELDOUT_SPLIT).samples, model.labels, heldout_rows, seed)
    samples += held
    tensors: dict[str, torch.Tensor] = {"targets": targets_of(samples, model.labels)}
    tensors["heldout"] = torch.arange(len(samples)) >= len(samples) - len(held)
    for m in model.modalities:
        x = prepare(samples, m, model.encoders[m], cache, "replay memory")
        tensors[f"{m}.present"] = x.present
        parts = x.data if isinstance(x.data, dict) else {"": x.data}
        for k, v in parts.items():
            tensors[f"{m}.data.{k}" if k else f"{m}.data"] = v.contiguous()
    meta = {
        "rows": str(len(samples) - len(held)),
        "heldout_rows": str(len(held)),
        "heldout_split": HELDOUT_SPLIT,
        "source": str(Path(data_dir).name),
        "licence": licence or "the licences of the source dataset",
        "specs": json.dumps({m: model.config.spec(m).to_dict() for m in model.modalities}, sort_keys=True),
        "frozen": json.dumps({m: bool(model.config.spec(m).frozen) for m in model.modalities}),
    }
    return tensors, meta


def save(folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    path = Path(folder) / FILE
    tmp = path.with_name(f".{FILE}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)  # a reader never sees a partial file
    return path


def load(folder: str | Path, model: Any) -> Memory | None:
    """The memory of the checkpoint at ``folder`` as inputs for ``model`` (its modalities, its specs), or None when
    the folder has none or it was prepared for other encoders. A memory written before held-out rows existed has
    none (``heldout`` all False)."""
    from safetensors import safe_open

    path = Path(folder) / FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    specs = json.loads(meta.get("specs", "{}"))
    if any(specs.get(m) != model.config.spec(m).to_dict() for m in model.modalities):
        return None
    frozen = json.loads(meta.get("frozen", "{}"))
    out = {}
    for m in model.modalities:
        data = {k.split(".data.", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{m}.data.")}
        out[m] = ModalityInputs(data or tensors[f"{m}.data"], tensors[f"{m}.present"].bool(), bool(frozen.get(m)))
    targets = tensors["targets"].long()
    heldout = tensors["heldout"].bool() if "heldout" in tensors else torch.zeros(len(targets), dtype=torch.bool)
    return Memory(out, targets, heldout, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ume_mma.replaymemory", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint folder (the memory is written into it)")
    ap.add_argument("data", help="the checkpoint's training dataset folder (its train split is sampled)")
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    ap.add_argument("--heldout-rows", type=int, default=DEFAULT_HELDOUT_ROWS,
                    help="rows of the validation split, never trained on: the branch guard scores them")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--licence", default="", help="what the rows may be used under (stated in the model cards)")
    args = ap.parse_intermixed_args(argv)
    from ume_mma.checkpoint import from_pretrained

    try:
        model = from_pretrained(args.checkpoint)
        path = save(args.checkpoint, *build(model, args.data, args.rows, args.seed, args.heldout_rows, args.licence))
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
