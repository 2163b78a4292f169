"""Training job: ``python -m ume_mma.train CONFIG [key=value ...] [--resume]``.

Runs the whole method on one dataset: one uni-modal model per modality (together: UME), a naive
late-fusion baseline trained jointly without augmentation, MMA (late fusion initialised from the
uni-modal models, fine-tuned with modality dropout), and the UME-MMA choice on full-modality
validation. Written with Accelerate: ``accelerate launch -m ume_mma.train ...`` trains on several
processes/GPUs. Outputs in ``out``: ``checkpoint/`` (the chosen model), ``models/<name>/`` (every
model), ``metrics.json``, ``train_config.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ume_mma.augment import modality_dropout
from ume_mma.checkpoint import from_pretrained, save_pretrained
from ume_mma.evaluate import evaluate_features, model_features, targets_of
from ume_mma.features import ModalityInputs, prepare
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import create_encoder, get_spec
from ume_mma.trainconfig import TrainConfig, load_config

Split = dict[str, ModalityInputs]


class Job:
    """One training run: data prepared once, then phases that each train and save one model."""

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs
        from accelerate.utils import set_seed

        from ume_mma.data.format import load_dataset

        self.cfg, self.resume, self.out = cfg, resume, Path(cfg.out)
        self.acc = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        set_seed(cfg.seed)
        data = load_dataset(cfg.data)
        self.labels = data.labels
        self.specs = {m: get_spec(name) for m, name in sorted(cfg.encoders.items())}
        cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
        self.inputs: dict[str, Split] = {}
        self.targets: dict[str, torch.Tensor] = {}
        self.groups: dict[str, list[str | None]] = {}
        protos = {m: create_encoder(s, pretrained=bool(s.frozen and s.pretrained)) for m, s in self.specs.items()}
        for split in (cfg.train_split, cfg.val_split, cfg.test_split):
            samples = [
                s
                for s in data.samples
                if s.split == split
                and (split != cfg.test_split or all(s.meta.get(k) == v for k, v in cfg.test_meta.items()))
            ][: cfg.limit]
            if not samples:
                raise ValueError(f"{cfg.data}: split {split!r} has no samples")
            with self.acc.main_process_first():
                self.inputs[split] = {m: prepare(samples, m, protos[m], cache, split) for m in self.specs}
            self.targets[split] = targets_of(samples, self.labels)
            self.groups[split] = [s.group for s in samples]

    def log(self, msg: str) -> None:
        if self.acc.is_main_process:
            tqdm.write(msg)

    def model_config(self, modalities: list[str], fusion: str) -> ModelConfig:
        return ModelConfig(
            task=self.cfg.task,
            labels=self.labels,
            fusion=fusion,
            fill=self.cfg.fill,
            encoders={m: self.specs[m].to_dict() for m in modalities},
            training=self.cfg.to_dict(),
        )

    def _batch(self, split: Split, idx: torch.Tensor, pairing: dict[str, torch.Tensor], mods: list[str]):
        inputs, feats, present = {}, {}, {}
        dev = self.acc.device
        for m in mods:
            rows = pairing[m][idx] if m in pairing else idx
            x = split[m]
            present[m] = x.present[rows].to(dev)
            data = x.rows(rows)
            data = {k: v.to(dev) for k, v in data.items()} if isinstance(data, dict) else data.to(dev)
            (feats if x.is_features else inputs)[m] = data
        return inputs, feats, present

    def _pairing(self, epoch: int) -> dict[str, torch.Tensor]:
        """Re-pair ``cfg.repair``'s rows with other rows of the same label (same on every process)."""
        m = self.cfg.repair
        if not m:
            return {}
        y, present = self.targets[self.cfg.train_split], self.inputs[self.cfg.train_split][m].present
        g = torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch)
        perm = torch.arange(len(y))
        for label in y.unique():
            rows = ((y == label) & present).nonzero().flatten()
            perm[rows] = rows[torch.randperm(len(rows), generator=g)]
        return {m: perm}

    def train(self, name: str, model: MultiModalModel, epochs: int, lr: float, dropout_p: float) -> MultiModalModel:
        """Train ``model`` (or load it when resuming a finished phase); saves ``models/<name>``."""
        done = self.out / "models" / name
        if self.resume and (done / "config.json").is_file():
            self.log(f"[{name}] finished earlier: loaded {done}")
            return from_pretrained(done, load_encoder_weights=False)
        cfg, acc = self.cfg, self.acc
        for m in model.frozen_modalities():
            model.encoders[m].requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        split = self.inputs[cfg.train_split]
        mods = model.modalities
        rows = torch.stack([split[m].present for m in mods]).any(0).nonzero().flatten()
        loader = torch.utils.data.DataLoader(
            rows,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed),
            drop_last=len(rows) > cfg.batch_size,
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=opt.param_groups[0]["lr"], total_steps=max(1, epochs * len(loader)), pct_start=0.15
        )
        model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
        state_dir = self.out / "state" / name
        start = 0
        if self.resume and (state_dir / "progress.json").is_file():
            start = _load_state(state_dir, acc.unwrap_model(model), opt, sched) + 1
            self.log(f"[{name}] resuming at epoch {start + 1}/{epochs}")
        y = self.targets[cfg.train_split]
        for epoch in range(start, epochs):
            model.train()
            g = torch.Generator().manual_seed((cfg.seed * 1009 + epoch) * 97 + acc.process_index)
            pairing = self._pairing(epoch)
            bar = tqdm(loader, desc=f"{name} {epoch + 1}/{epochs}", disable=not acc.is_main_process, leave=False)
            for idx in bar:
                inputs, feats, present = self._batch(split, idx.cpu(), pairing, mods)
                inputs = {m: acc.unwrap_model(model).encoders[m].augment(x, g) for m, x in inputs.items()}
                if dropout_p > 0:
                    present = {
                        m: v.to(acc.device)
                        for m, v in modality_dropout({m: v.cpu() for m, v in present.items()}, dropout_p, g).items()
                    }
                out = model(inputs, present, features=feats)
                loss = torch.nn.functional.cross_entropy(out.fused, y[idx.cpu()].to(acc.device))
                acc.backward(loss)
                opt.step()
                sched.step()
                opt.zero_grad()
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if acc.is_main_process:
                _save_state(state_dir, acc.unwrap_model(model), opt, sched, epoch)
            acc.wait_for_everyone()
        model = acc.unwrap_model(model)
        if acc.is_main_process and cfg.save_all:
            save_pretrained(model, done)
        acc.wait_for_everyone()
        return model

    def evaluate(self, model: MultiModalModel, split: str) -> dict[str, Any]:
        inputs = self.inputs[split]
        sub = {m: inputs[m] for m in model.modalities}
        return evaluate_features(
            model,
            model_features(model, sub),
            {m: x.present for m, x in sub.items()},
            self.targets[split],
            self.cfg.seed,
            self.cfg.eval_repeats,
            self.groups[split],
        )


def _save_state(folder: Path, model: MultiModalModel, opt: Any, sched: Any, epoch: int) -> None:
    """Resumable state after ``epoch``: weights as safetensors, optimizer/scheduler as tensors-only torch files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, folder / "optimizer.pt")
    (folder / "progress.json").write_text(json.dumps({"epoch": epoch}))


def _load_state(folder: Path, model: MultiModalModel, opt: Any, sched: Any) -> int:
    """Restore what :func:`_save_state` wrote (``weights_only`` loading: nothing is unpickled). Returns the epoch."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(folder / "model.safetensors"))
    state = torch.load(folder / "optimizer.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return int(json.loads((folder / "progress.json").read_text())["epoch"])


def run(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train every model of the method, choose UME-MMA on validation, evaluate on test, save."""
    started = time.perf_counter()
    job = Job(cfg, resume)
    out = Path(cfg.out)
    if job.acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    mods = sorted(job.specs)

    def lr(modalities: list[str]) -> float:  # heads alone (every encoder frozen) take head_lr
        return cfg.head_lr if all(job.specs[m].frozen for m in modalities) else cfg.lr

    def epochs(m: str) -> int:  # a head on a frozen encoder may need fewer epochs than a trained encoder
        return cfg.head_epochs if cfg.head_epochs is not None and job.specs[m].frozen else cfg.epochs

    uni = {
        m: job.train(f"unimodal-{m}", MultiModalModel(job.model_config([m], "ume")), epochs(m), lr([m]), 0.0)
        for m in mods
    }
    models: dict[str, MultiModalModel] = {f"{m}-only": uni[m] for m in mods}
    if len(mods) > 1:
        models["ume"] = MultiModalModel.from_unimodal(uni, "ume", task=cfg.task)
        models["ume"].config.training = cfg.to_dict()
        models["naive"] = job.train(
            "naive", MultiModalModel(job.model_config(mods, "naive")), cfg.epochs, lr(mods), 0.0
        )
        mma = MultiModalModel.from_unimodal(uni, "mma", fill=cfg.fill, task=cfg.task)
        mma.config.training = cfg.to_dict()
        models["mma"] = job.train("mma", mma, cfg.mma_epochs, cfg.mma_lr, cfg.dropout_p)
    val = {name: job.evaluate(m, cfg.val_split) for name, m in models.items()}
    test = {name: job.evaluate(m, cfg.test_split) for name, m in models.items()}
    chosen = (
        "mma"
        if len(mods) > 1 and val["mma"]["accuracy"]["full"] > val["ume"]["accuracy"]["full"]
        else ("ume" if len(mods) > 1 else f"{mods[0]}-only")
    )
    test["ume-mma"] = test[chosen]
    metrics = {
        "chosen": chosen,
        "rule": "UME-MMA keeps MMA where it beats UME on full-modality validation, else UME",
        "val": val,
        "test": test,
        "task": cfg.task,
        "seed": cfg.seed,
        "encoders": cfg.encoders,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "resumed": resume,
    }
    if job.acc.is_main_process:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        notes = _results_notes(metrics)
        save_pretrained(models[chosen], out / "checkpoint", metrics=test[chosen], card_notes=notes)
        job.log(notes)
    job.acc.wait_for_everyone()
    job.acc.end_training()
    return metrics


def _results_notes(metrics: dict[str, Any]) -> str:
    from ume_mma.report import accuracy_columns, column_title

    test = metrics["test"]
    cols = accuracy_columns(max((t["accuracy"] for t in test.values()), key=len))
    lines = [
        f"## All models of this run (test split, seed {metrics['seed']}; "
        f"UME-MMA chose `{metrics['chosen']}` on validation)",
        "",
        "| model | " + " | ".join(column_title(c) for c in cols) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for name, t in test.items():
        a = t["accuracy"]
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * a[c]:.1f}" if c in a else _single(name, c, a) for c in cols) + " |"
        )
    return "\n".join(lines)


def _single(name: str, col: str, acc: dict[str, float]) -> str:
    """A uni-modal model has no missing-modality columns: without its modality it has no input (-)."""
    m = name.removesuffix("-only")
    if col == f"without_{m}":
        return "-"
    return f"{100 * acc['full']:.1f}" if col.startswith("without_") else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ume_mma.train", description=__doc__.split("\n")[0])
    ap.add_argument("config", help="TOML or JSON training config (see configs/)")
    ap.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. seed=1 out=runs/x encoders.audio=scratch.logmel-cnn"
    )
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished epoch")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    run(cfg, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
