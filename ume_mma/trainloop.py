"""The training loop of one phase (one model): optimiser, one-cycle schedule, modality dropout, the resumable
state after every epoch, a stop request honoured at the next step boundary, progress lines.

:class:`PhaseTrainer` is the base of :class:`ume_mma.train.Job`, which prepares the data and the models; a
resumed phase continues exactly where it stopped: the loader's shuffling of the finished epochs is replayed,
the batches already done in the interrupted epoch are skipped and the augmentation generator is restored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ume_mma import keepskills, trainstate
from ume_mma.augment import modality_dropout
from ume_mma.checkpoint import from_pretrained
from ume_mma.evaluate import fused_accuracy, model_features
from ume_mma.features import ModalityInputs
from ume_mma.models import MultiModalModel
from ume_mma.progress import ProgressLog, Stopped, StopRequest
from ume_mma.trainconfig import TrainConfig

Split = dict[str, ModalityInputs]
Mask = dict[str, torch.Tensor]


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
    teacher: Any = None  # a fine-tune's distillation teacher for these modalities (ume_mma.keepskills), or None
    anchor: dict[str, torch.Tensor] | None = None  # a fine-tune's L2-SP anchor (the base's weights), or None


class PhaseTrainer:
    """Trains one phase at a time on the prepared splits (set by the subclass: ``cfg``, ``out``, ``resume``,
    ``accelerator``, ``inputs``, ``targets``, ``progress``, ``stop``)."""

    cfg: TrainConfig
    out: Path
    resume: bool
    accelerator: Any
    inputs: dict[str, Split]
    targets: dict[str, torch.Tensor]
    progress: ProgressLog
    stop: StopRequest
    keep_base: set[str] = frozenset()  # branches whose encoder and head stay as they are (frozen, eval mode)

    def teacher(self, modalities: list[str]) -> Any:
        """The model whose predictions a phase over ``modalities`` is distilled toward (a fine-tune's base), or
        None: no distillation (a run from scratch)."""
        return None

    def anchor(self, model: MultiModalModel) -> dict[str, torch.Tensor] | None:
        """The weights an L2-SP pull draws ``model``'s trainable parameters toward, or None (no pull)."""
        return None

    def distill_labels(self) -> int | None:
        """How many leading labels the distillation compares (None: all; a fine-tune: the base's own, since the
        rows grown for new labels are not the base's knowledge)."""
        return None

    def log(self, msg: str) -> None:
        if self.accelerator.is_main_process:
            tqdm.write(msg)

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
        for m in model.frozen_modalities():
            model.encoders[m].requires_grad_(False)
        for m in self.keep_base & set(model.modalities):
            model.encoders[m].requires_grad_(False)
            model.heads[m].requires_grad_(False)
        if not any(p.requires_grad for p in model.parameters()):
            self.log(f"[{name}] nothing left to train (every branch kept as it is)")
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
        teacher = self.teacher(model.modalities) if cfg.distill > 0 else None
        anchor = self.anchor(model) if cfg.l2sp > 0 else None
        state = self.out / "state" / name
        return Phase(name, *prepared, model.modalities, epochs, dropout_p, state, teacher, anchor)

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
        unwrapped = self.accelerator.unwrap_model(phase.model)
        for m in self.keep_base & set(phase.modalities):  # kept branches: no batch-norm statistics move either
            unwrapped.encoders[m].eval()
            unwrapped.heads[m].eval()
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
        if phase.teacher is not None:  # LwF: stay close to the base's softened answers on the same batch
            with torch.no_grad():
                taught = phase.teacher(inputs, present, features=feats).fused
            n, t = self.distill_labels(), self.cfg.distill_t
            loss = loss + self.cfg.distill * keepskills.distill_loss(out.fused[:, :n], taught[:, :n], t)
        if phase.anchor:  # L2-SP: a pull toward the base's weights
            loss = loss + self.cfg.l2sp * keepskills.l2sp_penalty(accelerator.unwrap_model(phase.model), phase.anchor)
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
