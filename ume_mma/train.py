"""Training job: ``python -m ume_mma.train CONFIG [key=value ...] [--resume] [--device auto|cpu|cuda]``.

Runs the whole method on one dataset: one uni-modal model per modality (together: UME), a naive
late-fusion baseline trained jointly without augmentation, MMA (late fusion initialised from the
uni-modal models, fine-tuned with modality dropout), and the UME-MMA choice on full-modality
validation. Written with Accelerate: ``accelerate launch -m ume_mma.train ...`` trains on several
processes/GPUs. Outputs in ``out``: ``checkpoint/`` (the chosen model), ``models/<name>/`` (every
model), ``metrics.json``, ``train_config.json``; each folder is written to a temporary sibling and renamed.

Fine-tuning (``init_from=CHECKPOINT``, see :mod:`ume_mma.finetune`): the uni-modal models start from the
checkpoint's encoders and branch heads, MMA also takes its fusion parameters and missing tokens; no naive
baseline is trained; ``replay``/``base_data`` mix base rows into training; metrics and the model card record
the parent, the data and the base checkpoint's test accuracy before training. ``--progress FILE`` writes JSON
lines (:mod:`ume_mma.progress`); SIGTERM saves the state at the next step boundary and exits with 143.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ume_mma import finetune, trainstate
from ume_mma.augment import modality_dropout
from ume_mma.checkpoint import from_pretrained
from ume_mma.device import DEVICE_CHOICES, resolve_device
from ume_mma.errors import DatasetFormatError, UmeMmaError
from ume_mma.evaluate import evaluate_features, fused_accuracy, model_features, targets_of
from ume_mma.features import ModalityInputs, prepare
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.progress import EXIT_STOPPED, ProgressLog, Stopped, StopRequest
from ume_mma.registry import create_encoder, get_spec
from ume_mma.report import accuracy_table
from ume_mma.trainconfig import ConfigError, TrainConfig, load_config

Split = dict[str, ModalityInputs]
Mask = dict[str, torch.Tensor]
CHOICE_RULE = "UME-MMA keeps MMA where it beats UME on full-modality validation, else UME"


def choose_ume_mma(full_accuracy: dict[str, float]) -> str:
    """The UME-MMA choice from full-modality validation accuracies (model name -> accuracy).

    ``mma`` only when it is strictly better than ``ume`` (a tie keeps UME, which needs no fusion
    training). A single-modality run has neither: its one uni-modal model (``<m>-only``) is the choice.
    """
    if "ume" in full_accuracy and "mma" in full_accuracy:
        return "mma" if full_accuracy["mma"] > full_accuracy["ume"] else "ume"
    if len(full_accuracy) == 1 and next(iter(full_accuracy)).endswith("-only"):
        return next(iter(full_accuracy))
    raise ValueError(f"UME-MMA needs 'ume' and 'mma' or a single uni-modal model, got {sorted(full_accuracy)}")


def make_accelerator(device: str = "auto") -> Any:
    """An ``Accelerator`` on ``device``: ``cpu`` forces the CPU, ``cuda`` requires a GPU (readable
    :class:`UmeMmaError` otherwise), ``auto`` leaves the choice to Accelerate (its launcher may place processes)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    resolve_device(device)
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    return Accelerator(cpu=device == "cpu", kwargs_handlers=handlers)


@dataclass
class Phase:
    """One model being trained: what Accelerate prepared for it, and how long and how to train it."""

    name: str
    model: Any  # the prepared model (wrapped for distributed training when there are several processes)
    optimizer: torch.optim.Optimizer
    loader: torch.utils.data.DataLoader
    scheduler: Any
    modalities: list[str]
    epochs: int
    dropout_p: float  # modality dropout (MMA only)
    state_dir: Path  # resumable state after each epoch


class Job:
    """One training run: data prepared once, then phases that each train and save one model."""

    def __init__(
        self, cfg: TrainConfig, resume: bool = False, device: str = "auto", progress: str | Path | None = None
    ) -> None:
        from accelerate.utils import set_seed

        from ume_mma.data.format import load_dataset

        self.cfg, self.resume, self.out = cfg, resume, Path(cfg.out)
        self.accelerator = make_accelerator(device)
        self.progress = ProgressLog(progress, enabled=self.accelerator.is_main_process)
        self.stop = StopRequest()
        data = load_dataset(cfg.data)
        self.finetune = finetune.start(cfg, data.labels) if cfg.init_from else None
        replay = finetune.replay_samples(cfg, self.finetune) if self.finetune else []
        set_seed(cfg.seed)
        if self.finetune:  # the base's labels (in its order) and its complete encoder specs
            base = self.finetune.base.to(self.accelerator.device)
            self.labels, self.specs = list(base.labels), {m: base.config.spec(m) for m in base.modalities}
        else:
            self.labels = data.labels
            self.specs = {m: get_spec(name) for m, name in sorted(cfg.encoders.items())}
        self.inputs: dict[str, Split] = {}
        self.targets: dict[str, torch.Tensor] = {}
        self.groups: dict[str, list[str | None]] = {}
        self._prepare_splits(data, replay)

    def _split_samples(self, data: Any, split: str) -> list[Any]:
        """The rows of ``split`` (test rows filtered by ``cfg.test_meta``), at most ``cfg.limit``."""
        samples = data.split(split).samples
        if split == self.cfg.test_split:
            samples = [s for s in samples if all(s.meta.get(k) == v for k, v in self.cfg.test_meta.items())]
        samples = samples[: self.cfg.limit]
        if not samples:
            raise DatasetFormatError(f"{self.cfg.data}: split {split!r} has no samples")
        return samples

    def _prepare_splits(self, data: Any, replay: list[Any]) -> None:
        """Decode (or read cached) inputs, targets and groups of the train, val and test splits; the
        ``replay`` rows (of the base dataset) are added to the train split."""
        cfg = self.cfg
        cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
        protos = {m: create_encoder(s, pretrained=bool(s.frozen and s.pretrained)) for m, s in self.specs.items()}
        for split in (cfg.train_split, cfg.val_split, cfg.test_split):
            samples = self._split_samples(data, split) + (replay if split == cfg.train_split else [])
            with self.accelerator.main_process_first():
                self.inputs[split] = {m: prepare(samples, m, protos[m], cache, split) for m in self.specs}
            self.targets[split] = targets_of(samples, self.labels)
            self.groups[split] = [s.group for s in samples]

    def log(self, msg: str) -> None:
        if self.accelerator.is_main_process:
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

    def fused_from_unimodal(self, uni: dict[str, MultiModalModel], fusion: str, fill: str) -> MultiModalModel:
        """A UME or MMA model whose encoders and heads start from the trained uni-modal models; its
        config (with this run's training config) is complete when the model is built. A fine-tune also
        takes the base's fusion parameters, UME weights and missing tokens."""
        base = self.finetune.base if self.finetune else None
        weights = finetune.ume_weights(base) if base is not None and fusion == "ume" else None
        model = MultiModalModel.from_unimodal(
            uni, fusion, fill=fill, task=self.cfg.task, ume_weights=weights, training=self.cfg.to_dict()
        )
        return finetune.init_fused(model, base) if base is not None else model

    def lr(self, modalities: list[str]) -> float:
        """Heads alone (every encoder frozen) take ``head_lr``."""
        return self.cfg.head_lr if all(self.specs[m].frozen for m in modalities) else self.cfg.lr

    def unimodal_epochs(self, m: str) -> int:
        """A head on a frozen encoder may need fewer epochs (``head_epochs``) than a trained encoder."""
        frozen = self.cfg.head_epochs is not None and self.specs[m].frozen
        return self.cfg.head_epochs if frozen else self.cfg.epochs

    def _batch(self, split: Split, idx: torch.Tensor, pairing: dict[str, torch.Tensor], mods: list[str]):
        inputs, feats, present = {}, {}, {}
        dev = self.accelerator.device
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
            rng = torch.get_rng_state()  # building the loaded model must not shift the next models' initialisation
            model = from_pretrained(done, load_encoder_weights=False).to(self.accelerator.device)
            torch.set_rng_state(rng)
            return model
        phase = self._setup(name, model, epochs, lr, dropout_p)
        start, skip = self._start_epoch(phase)
        self.progress.write("phase", phase=name, epochs=epochs, steps=len(phase.loader), start_epoch=start)
        for _ in range(start):  # the loader's shuffling draws from one generator: replay the finished epochs
            for _ in phase.loader:
                pass
        for epoch in range(start, epochs):
            self._run_epoch(phase, epoch, skip if epoch == start else 0)
        model = self.accelerator.unwrap_model(phase.model)
        if self.accelerator.is_main_process and self.cfg.save_all:
            trainstate.save_checkpoint(model, done)
        self.accelerator.wait_for_everyone()
        return model

    def _setup(self, name: str, model: MultiModalModel, epochs: int, lr: float, dropout_p: float) -> Phase:
        """Freeze frozen encoders, build optimizer, loader and one-cycle schedule, prepare them with Accelerate."""
        cfg = self.cfg
        for m in model.frozen_modalities():
            model.encoders[m].requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        split = self.inputs[cfg.train_split]
        rows = torch.stack([split[m].present for m in model.modalities]).any(0).nonzero().flatten()
        loader = torch.utils.data.DataLoader(
            rows,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed),
            drop_last=len(rows) > cfg.batch_size,
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(1, epochs * len(loader)), pct_start=0.15
        )
        prepared = self.accelerator.prepare(model, optimizer, loader, scheduler)
        return Phase(name, *prepared, model.modalities, epochs, dropout_p, self.out / "state" / name)

    def _start_epoch(self, phase: Phase) -> tuple[int, int]:
        """``(0, 0)``, or when resuming an interrupted phase, the epoch to continue and the steps of it already
        done (state restored)."""
        if not (self.resume and trainstate.has_state(phase.state_dir)):
            return 0, 0
        model = self.accelerator.unwrap_model(phase.model)
        epoch, step = trainstate.load_state(phase.state_dir, model, phase.optimizer, phase.scheduler)
        self.log(
            f"[{phase.name}] resuming at epoch {epoch + 2}/{phase.epochs}" + (f", step {step + 1}" if step else "")
        )
        return epoch + 1, step

    def _run_epoch(self, phase: Phase, epoch: int, skip: int = 0) -> None:
        """One pass over the training rows (the first ``skip`` batches were done before a stop), then the
        resumable state is saved. A stop request saves the state after the current step and raises ``Stopped``."""
        accelerator = self.accelerator
        phase.model.train()
        g = torch.Generator().manual_seed((self.cfg.seed * 1009 + epoch) * 97 + accelerator.process_index)
        if skip:
            trainstate.load_rng(phase.state_dir, accelerator.process_index, g)
        pairing = self._pairing(epoch)
        desc = f"{phase.name} {epoch + 1}/{phase.epochs}"
        bar = tqdm(phase.loader, desc=desc, disable=not accelerator.is_main_process, leave=False)
        steps, every, losses = len(phase.loader), max(1, len(phase.loader) // 100), []
        for i, idx in enumerate(bar):
            if i < skip:
                continue
            losses.append(self._step(phase, idx.cpu(), pairing, g))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if (i + 1) % every == 0 or i + 1 == steps:
                self.progress.write("step", phase=phase.name, epoch=epoch + 1, step=i + 1, steps=steps, loss=losses[-1])
            if self._stop_requested() and i + 1 < steps:
                self._save(phase, epoch - 1, i + 1, g)
                self.progress.write("stopped", phase=phase.name, epoch=epoch + 1, step=i + 1)
                raise Stopped(f"stopped in {phase.name} epoch {epoch + 1}, step {i + 1}: state saved")
        self._save(phase, epoch, 0, None)
        loss = sum(losses) / len(losses) if losses else None
        val = self._val_accuracy(phase) if self.progress.enabled else None
        self.progress.write(
            "epoch", phase=phase.name, epoch=epoch + 1, epochs=phase.epochs, loss=loss, val_accuracy=val
        )
        if self._stop_requested() and epoch + 1 < phase.epochs:
            self.progress.write("stopped", phase=phase.name, epoch=epoch + 1, step=steps)
            raise Stopped(f"stopped after {phase.name} epoch {epoch + 1}: state saved")

    def _save(self, phase: Phase, epoch: int, step: int, g: torch.Generator | None) -> None:
        """Save the resumable state (every process its generator when mid-epoch, the main process the rest)."""
        accelerator = self.accelerator
        if g is not None:
            trainstate.save_rng(phase.state_dir, accelerator.process_index, g)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(phase.model)
            trainstate.save_state(phase.state_dir, model, phase.optimizer, phase.scheduler, epoch, step)
        accelerator.wait_for_everyone()

    def _stop_requested(self) -> bool:
        """Whether SIGTERM arrived in any process (all processes agree, so they stop at the same step)."""
        flag = self.stop.requested
        if self.accelerator.num_processes > 1:
            mine = torch.tensor([float(flag)], device=self.accelerator.device)
            flag = bool(self.accelerator.gather(mine).max() > 0)
        return flag

    @torch.no_grad()
    def _val_accuracy(self, phase: Phase) -> float:
        """Full-modality accuracy of the phase's model on the validation split (for the progress file)."""
        model = self.accelerator.unwrap_model(phase.model)
        sub = {m: self.inputs[self.cfg.val_split][m] for m in model.modalities}
        dev = model.heads[model.modalities[0]].weight.device
        feats = {m: f.to(dev) for m, f in model_features(model, sub).items()}
        present = {m: x.present.to(dev) for m, x in sub.items()}
        return fused_accuracy(model, feats, present, self.targets[self.cfg.val_split].to(dev))

    def _step(self, phase: Phase, idx: torch.Tensor, pairing: dict[str, torch.Tensor], g: torch.Generator) -> float:
        """One optimisation step on the training rows ``idx``; returns the loss."""
        accelerator = self.accelerator
        inputs, feats, present = self._batch(self.inputs[self.cfg.train_split], idx, pairing, phase.modalities)
        encoders = accelerator.unwrap_model(phase.model).encoders
        inputs = {m: encoders[m].augment(x, g) for m, x in inputs.items()}
        present = self._drop_modalities(present, phase.dropout_p, g)
        out = phase.model(inputs, present, features=feats)
        loss = torch.nn.functional.cross_entropy(
            out.fused, self.targets[self.cfg.train_split][idx].to(accelerator.device)
        )
        accelerator.backward(loss)
        phase.optimizer.step()
        phase.scheduler.step()
        phase.optimizer.zero_grad()
        return loss.item()

    def _drop_modalities(self, present: Mask, p: float, g: torch.Generator) -> Mask:
        """Modality dropout (MMA's missing-modality augmentation) on the batch's presence mask."""
        if p <= 0:
            return present
        dropped = modality_dropout({m: v.cpu() for m, v in present.items()}, p, g)
        return {m: v.to(self.accelerator.device) for m, v in dropped.items()}

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


def train_models(job: Job) -> dict[str, MultiModalModel]:
    """Every model of the method: ``<m>-only`` per modality and, with two or more, ``ume``, ``naive``, ``mma``.
    A fine-tune starts the uni-modal models from the base checkpoint and trains no naive baseline."""
    cfg, mods = job.cfg, sorted(job.specs)
    base = job.finetune.base if job.finetune else None
    uni: dict[str, MultiModalModel] = {}
    for m in mods:
        unimodal = MultiModalModel(job.model_config([m], "ume"))
        if base is not None:
            finetune.init_unimodal(unimodal, base)
        uni[m] = job.train(f"unimodal-{m}", unimodal, job.unimodal_epochs(m), job.lr([m]), 0.0)
    models: dict[str, MultiModalModel] = {f"{m}-only": uni[m] for m in mods}
    if len(mods) < 2:
        return models
    models["ume"] = job.fused_from_unimodal(uni, "ume", fill="drop")
    if base is None:
        naive = MultiModalModel(job.model_config(mods, "naive"))
        models["naive"] = job.train("naive", naive, cfg.epochs, job.lr(mods), 0.0)
    mma = job.fused_from_unimodal(uni, "mma", fill=cfg.fill)
    models["mma"] = job.train("mma", mma, cfg.mma_epochs, cfg.mma_lr, cfg.dropout_p)
    return models


def run(
    cfg: TrainConfig, resume: bool = False, device: str = "auto", progress: str | Path | None = None
) -> dict[str, Any]:
    """Train every model of the method, choose UME-MMA on validation, evaluate on test, save. ``progress``:
    a file that gets JSON lines. SIGTERM during training saves the state and raises ``Stopped``."""
    stop = StopRequest().install()
    try:
        return _run(cfg, resume, device, progress, stop)
    finally:
        stop.uninstall()


def _run(cfg: TrainConfig, resume: bool, device: str, progress: str | Path | None, stop: StopRequest) -> dict:
    started = time.perf_counter()
    job = Job(cfg, resume, device, progress)
    job.stop = stop
    out = Path(cfg.out)
    if job.accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    job.progress.write(
        "start", resume=resume, finetune=bool(job.finetune), train_rows=len(job.targets[cfg.train_split])
    )
    if job.finetune:
        job.finetune.before = job.evaluate(job.finetune.base, cfg.test_split)
        job.progress.write("eval", name="before", accuracy=job.finetune.before["accuracy"])
    models = train_models(job)
    val = {name: job.evaluate(m, cfg.val_split) for name, m in models.items()}
    test = {name: job.evaluate(m, cfg.test_split) for name, m in models.items()}
    chosen = choose_ume_mma({name: v["accuracy"]["full"] for name, v in val.items()})
    test["ume-mma"] = test[chosen]
    metrics = {
        "chosen": chosen,
        "rule": CHOICE_RULE,
        "val": val,
        "test": test,
        "task": cfg.task,
        "seed": cfg.seed,
        "encoders": cfg.encoders,
        "data": cfg.data,
        "train_rows": len(job.targets[cfg.train_split]),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "resumed": resume,
    }
    if job.finetune:
        metrics["finetune"] = job.finetune.record(test[chosen])
    if job.accelerator.is_main_process:
        _save_outputs(out, metrics, models[chosen])
        job.log(results_notes(metrics))
    job.progress.write("eval", name="after", accuracy=test[chosen]["accuracy"])
    job.progress.write("done", chosen=chosen, test_accuracy=test[chosen]["accuracy"]["full"])
    job.accelerator.wait_for_everyone()
    job.accelerator.end_training()
    return metrics


def _save_outputs(out: Path, metrics: dict[str, Any], chosen: MultiModalModel) -> None:
    """``metrics.json`` and ``checkpoint/`` (its metrics and card record a fine-tune's parent and before/after)."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    notes = results_notes(metrics)
    card_metrics = dict(metrics["test"][metrics["chosen"]])
    if "finetune" in metrics:
        notes += "\n\n" + finetune.notes(metrics["finetune"])
        card_metrics["finetune"] = metrics["finetune"]
    trainstate.save_checkpoint(chosen, out / "checkpoint", metrics=card_metrics, card_notes=notes)


def results_notes(metrics: dict[str, Any]) -> str:
    """The model card's table of every model of the run (test split)."""
    head = (
        f"## All models of this run (test split, seed {metrics['seed']}; "
        f"UME-MMA chose `{metrics['chosen']}` on validation)"
    )
    rows = [([name], name, [t["accuracy"]]) for name, t in metrics["test"].items()]
    return head + "\n\n" + accuracy_table(["model"], rows)


def main(argv: list[str] | None = None) -> int:
    """CLI. Exit status: 0 done, 1 the data/model could not be used, 2 bad config, override or device (or a
    fine-tune base that does not load or lacks a label of the data), 143 stopped by SIGTERM (state saved)."""
    ap = argparse.ArgumentParser(prog="python -m ume_mma.train", description=__doc__.split("\n")[0])
    ap.add_argument("config", help="TOML or JSON training config (see configs/)")
    ap.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. seed=1 out=runs/x encoders.audio=scratch.logmel-cnn"
    )
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished epoch")
    ap.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: the GPU when there is one")
    ap.add_argument("--progress", metavar="FILE", help="append progress as JSON lines (phase, epoch, step, loss...)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        resolve_device(args.device)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run(cfg, resume=args.resume, device=args.device, progress=args.progress)
    except Stopped as exc:
        print(f"{exc}; continue with --resume", file=sys.stderr)
        return EXIT_STOPPED
    except ConfigError as exc:  # a fine-tune whose base does not load or does not know a label of the data
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
