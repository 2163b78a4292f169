"""Training job: ``python -m ume_mma.train CONFIG [key=value ...] [--resume] [--device auto|cpu|cuda]``.

Runs the whole method on one dataset: one uni-modal model per modality (together: UME), a naive
late-fusion baseline trained jointly without augmentation, MMA (late fusion initialised from the
uni-modal models, fine-tuned with modality dropout), and the UME-MMA choice on full-modality
validation. The chosen model then gets per-branch calibration and reliability statistics (:mod:`ume_mma.calibrate`:
feature statistics on the train split, temperatures, thresholds and ``alpha`` on validation) and is saved with
reliability-weighted branches (fusion ``reliability``) when validation picks ``alpha > 0``
(:data:`ume_mma.calibrate.REL_RULE`).
Written with Accelerate: ``accelerate launch -m ume_mma.train ...`` trains on several
processes/GPUs. Outputs in ``out``: ``checkpoint/`` (the chosen model), ``models/<name>/`` (every
model), ``metrics.json``, ``train_config.json``; each folder is written to a temporary sibling and renamed.

Fine-tuning (``init_from=CHECKPOINT``, see :mod:`ume_mma.finetune`): the uni-modal models start from the
checkpoint's encoders and branch heads, MMA also takes its fusion parameters and missing tokens; no naive
baseline is trained; ``replay``/``base_data`` mix base rows into training; metrics and the model card record
the parent, the data and the base checkpoint's test accuracy before training (with ``base_data``, before and
after on the base data's test split too: what the fine-tune kept of the old skills). ``--progress FILE`` writes JSON
lines (:mod:`ume_mma.progress`); SIGTERM saves the state at the next step boundary and exits with 143.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ume_mma import branchguard, finetune, hub, keepskills, replaymemory, trainstate
from ume_mma.calibrate import FeatureSet, base_mode, calibrate
from ume_mma.calibrate import notes as reliability_notes
from ume_mma.device import DEVICE_CHOICES, resolve_device
from ume_mma.errors import DatasetFormatError, UmeMmaError
from ume_mma.evaluate import evaluate_features, fused_accuracy, model_features, targets_of
from ume_mma.features import concat, prepare
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.progress import EXIT_STOPPED, ProgressLog, Stopped, StopRequest
from ume_mma.registry import create_encoder, get_spec
from ume_mma.reliability import auroc
from ume_mma.report import accuracy_table
from ume_mma.trainconfig import ConfigError, TrainConfig, load_config
from ume_mma.trainloop import PhaseTrainer, Split

BASE_TEST = "base:test"  # a fine-tune's extra evaluation split: the base data's test split
VAL_CHOICE = "ume-mma-val"  # with drift_choice: the UME-MMA model before the drift-aware choice (test, shifted)
SHIFTED = "shifted:"  # prefix of the evaluation-only splits of ``cfg.shifted`` (test rows, one modality shifted)
CHOICE_RULE = (
    "UME-MMA keeps MMA where it beats UME on full-modality validation, else UME "
    "(a fine-tune with enough annotations chooses by K-fold cross-validation over them; a fine-tune of an MMA "
    "checkpoint keeps MMA on a tie)"
)


def choose_ume_mma(full_accuracy: dict[str, float], tie: str = "ume") -> str:
    """The UME-MMA choice from full-modality validation accuracies (model name -> accuracy).

    ``mma`` only when it is strictly better than ``ume``; a tie keeps ``tie``: UME, which needs no fusion
    training, or (a fine-tune) the base checkpoint's own fusion, which was chosen on the base's whole validation
    set (a fine-tune on a few annotations validates on a handful of items, where ties are common). A
    single-modality run has neither: its one uni-modal model (``<m>-only``) is the choice.
    """
    if "ume" in full_accuracy and "mma" in full_accuracy:
        mma, ume = full_accuracy["mma"], full_accuracy["ume"]
        return "mma" if mma > ume or (mma == ume and tie == "mma") else "ume"
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


class Job(PhaseTrainer):
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
        train_labels = data.split(cfg.train_split).labels
        self.finetune = finetune.start(cfg, data.labels, train_labels) if cfg.init_from else None
        replay = finetune.replay_samples(cfg, self.finetune) if self.finetune else []
        set_seed(cfg.seed)
        if self.finetune:  # the base's labels (in its order, new ones appended) and its complete encoder specs
            base = self.finetune.base.to(self.accelerator.device)
            self.labels, self.specs = list(base.labels), {m: base.config.spec(m) for m in base.modalities}
        else:
            self.labels = data.labels
            self.specs = {m: get_spec(name) for m, name in sorted(cfg.encoders.items())}
        self.inputs: dict[str, Split] = {}
        self.targets: dict[str, torch.Tensor] = {}
        self.groups: dict[str, list[str | None]] = {}
        self._prepare_splits(data, replay)
        self.val_samples = self._split_samples(data, cfg.val_split)  # decoded again only by the drift choice
        # the replay memory's held-out rows (the base never trained on them; nor does any model here): (inputs,
        # targets Tensor[H]), scored by the branch guard and the fusion choice
        self.memory_heldout: tuple[Split, torch.Tensor] | None = None
        memory = self._add_replay_memory(train=not cfg.base_data) if self.finetune and cfg.replay_memory else 0
        self.annotated_train = len(self.targets[cfg.train_split]) - len(replay) - memory  # the new data's train rows
        self.guard: dict[str, dict[str, Any]] = {}  # a fine-tune's branch-guard verdicts (ume_mma.branchguard)
        self.cv_choice: dict[str, Any] | None = None  # a fine-tune's cross-validated UME/MMA choice
        self.keep_base: set[str] = set()  # branches kept from the base: frozen while the fusion is refitted

    def _split_samples(self, data: Any, split: str, folder: str | None = None) -> list[Any]:
        """The rows of ``split`` (test rows filtered by ``cfg.test_meta``), at most ``cfg.limit``."""
        samples = data.split(split).samples
        if split == self.cfg.test_split:
            samples = [s for s in samples if all(s.meta.get(k) == v for k, v in self.cfg.test_meta.items())]
        samples = samples[: self.cfg.limit]
        if not samples:
            raise DatasetFormatError(f"{folder or self.cfg.data}: split {split!r} has no samples")
        return samples

    def _prepare_splits(self, data: Any, replay: list[Any]) -> None:
        """Decode (or read cached) inputs, targets and groups of the train, val and test splits; the
        ``replay`` rows (of the base dataset) are added to the train split. A fine-tune with ``base_data`` also
        gets the base dataset's test split (at most ``cfg.limit`` rows) as split :data:`BASE_TEST`: it is
        evaluated there before and after, to show what it kept of the old skills."""
        from ume_mma.data.format import load_dataset

        cfg = self.cfg
        rows = {
            split: self._split_samples(data, split) + (replay if split == cfg.train_split else [])
            for split in (cfg.train_split, cfg.val_split, cfg.test_split)
        }
        if self.finetune and cfg.base_data:
            base_test = load_dataset(cfg.base_data).split(cfg.test_split).samples[: cfg.limit]
            if base_test:
                rows[BASE_TEST] = base_test
        self.shifts: dict[str, str | None] = {}
        for name, folder in cfg.shifted.items():
            rows[SHIFTED + name] = self._split_samples(load_dataset(folder), cfg.test_split, folder)
            self.shifts[SHIFTED + name] = rows[SHIFTED + name][0].meta.get("shifted")
        cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
        protos = {m: create_encoder(s, pretrained=bool(s.frozen and s.pretrained)) for m, s in self.specs.items()}
        for split, samples in rows.items():
            with self.accelerator.main_process_first():
                self.inputs[split] = {m: prepare(samples, m, protos[m], cache, split) for m in self.specs}
            self.targets[split] = targets_of(samples, self.labels)
            self.groups[split] = [s.group for s in samples]

    def _add_replay_memory(self, train: bool = True) -> int:
        """Append the base checkpoint's replay memory (if it carries one for these encoders) to the train split
        (``train``; with ``base_data`` its replay does that) and keep its held-out rows for the branch guard;
        returns the rows appended."""
        loaded = replaymemory.load(hub.resolve(self.cfg.init_from), self.finetune.base)
        if loaded is None:
            return 0
        inputs, targets = loaded.part(heldout=False)
        meta, held = loaded.meta, loaded.part(heldout=True)
        if len(held[1]):  # never trained on: the branch guard and the fusion choice score them
            self.memory_heldout = held
        rows = len(targets) if train else 0
        if rows:
            split = self.cfg.train_split
            self.inputs[split] = {m: concat(x, inputs[m]) for m, x in self.inputs[split].items()}
            self.targets[split] = torch.cat([self.targets[split], targets])
            self.groups[split] = [*self.groups[split], *([None] * len(targets))]
        if rows or len(held[1]):
            self.finetune.memory = {"rows": rows, "heldout_rows": len(held[1]), "source": meta.get("source"),
                                    "licence": meta.get("licence")}  # fmt: skip
        return rows

    def teacher(self, modalities: list[str]) -> MultiModalModel | None:
        """A fine-tune's distillation teacher for a phase over ``modalities``: the base (its branch alone for one
        modality of several), frozen and in eval mode; None for a run from scratch."""
        if not self.finetune:
            return None
        base = self.finetune.base
        if sorted(modalities) != sorted(base.modalities):
            (m,) = modalities
            base = finetune.init_unimodal(MultiModalModel(self.model_config([m], "ume")), base)
        return base.to(self.accelerator.device).eval().requires_grad_(False)

    def anchor(self, model: MultiModalModel) -> dict[str, torch.Tensor] | None:
        """A fine-tune's L2-SP anchor: the base's weights of ``model``'s trainable parameters."""
        return keepskills.anchor_of(model, self.finetune.base) if self.finetune else None

    def distill_labels(self) -> int | None:
        return len(self.finetune.base_labels) if self.finetune else None

    def model_config(self, modalities: list[str], fusion: str) -> ModelConfig:
        return ModelConfig(
            task=self.cfg.task,
            labels=self.labels,
            fusion=fusion,
            fill=self.cfg.fill,
            encoders={m: self.specs[m].to_dict() for m in modalities},
            training=self.cfg.to_dict(),
            label_history=self.finetune.base.config.label_history if self.finetune else None,
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

    def feature_set(self, model: MultiModalModel, split: str) -> FeatureSet:
        """Encoder outputs of ``model`` on ``split`` (cached features of frozen encoders are reused)."""
        sub = {m: self.inputs[split][m] for m in model.modalities}
        return FeatureSet(model_features(model, sub), {m: x.present for m, x in sub.items()}, self.targets[split])

    def calibrate(self, model: MultiModalModel) -> tuple[MultiModalModel, dict[str, Any]]:
        """``model`` with calibration and reliability fitted (statistics on train, the rest on validation) and,
        with two or more modalities, the reliability-aware fusion when validation picks ``alpha > 0``."""
        cfg = self.cfg
        fitted_on = {"data": cfg.data, "stats": cfg.train_split, "val": cfg.val_split}
        fusion = "auto" if len(model.modalities) > 1 else "keep"
        stats_set, val = self.feature_set(model, cfg.train_split), self.feature_set(model, cfg.val_split)
        return calibrate(model, stats_set, val, cfg.seed, fusion, fitted_on=fitted_on)

    def choose_under_drift(self, model: MultiModalModel) -> tuple[MultiModalModel, dict[str, Any]]:
        """``model`` (calibrated) with a correctness estimate fitted on validation + the fitting drift families
        and the fusion chosen on validation + the held-out families (:mod:`ume_mma.drift_choice`), and the
        record; ``model`` itself and ``{"skipped": why}`` where no estimate can be fitted (a branch always right
        on validation, a single modality)."""
        from ume_mma import drift_choice
        from ume_mma.correctness_fit import fit_correctness, with_correctness

        if len(model.modalities) < 2 or model.reliability is None:
            return model, {"skipped": "the drift choice weighs two or more calibrated branches"}
        rows = self.val_samples[: self.cfg.drift_choice_rows]
        for m in model.modalities:  # trained on cached features: a frozen pre-trained encoder has no weights yet
            spec = model.config.spec(m)
            if spec.frozen and spec.pretrained:
                model.encoders[m].load_pretrained()
        base = drift_choice.configure(model, base_mode(model))
        try:
            est, report = fit_correctness(base, rows, seed=self.cfg.seed, fitted_on={"data": self.cfg.data})
        except ValueError as exc:
            return model, {"skipped": str(exc)}
        fitted = with_correctness(base, est)
        chosen, record = drift_choice.choose(fitted, drift_choice.drift_set(fitted, rows, seed=self.cfg.seed))
        return chosen, record | {"fit_report": report}

    def shifted_record(self, models: dict[str, MultiModalModel], calibrated: str) -> dict[str, Any]:
        """Per ``cfg.shifted`` set: every model's full accuracy there (``accuracy``), the branch accuracies of
        ``models[calibrated]`` (``branches``) and, for the shifted modality, how well its reliability score
        separates those inputs from in-distribution ones (``auroc``, shifted = positive): from the validation
        split's (same sources as training; the score's statistics are fitted on train) and from the test split's
        (which may be shifted itself, e.g. emoji-vl's cross-style test), and the share of each flagged
        ``off_distribution`` (reliability < 0.5). Each model's features of a split are computed once."""
        cfg, model = self.cfg, models[calibrated]
        rel = model.reliability
        refs = {"val": cfg.val_split, "test": cfg.test_split}
        ref_scores: dict[str, dict[str, torch.Tensor]] = {}  # modality -> its in-distribution scores, per split
        out: dict[str, Any] = {}
        for name in cfg.shifted:
            split = SHIFTED + name
            sets = {k: self.feature_set(net, split) for k, net in models.items()}
            acc = {k: fused_accuracy(models[k], f.feats, f.present, f.targets) for k, f in sets.items()}
            record: dict[str, Any] = {"rows": len(self.targets[split]), "accuracy": acc}
            own = sets[calibrated]
            record["branches"] = evaluate_features(
                model, own.feats, own.present, own.targets, cfg.seed, cfg.eval_repeats, self.groups[split]
            )["branches"]
            m = self.shifts[split]
            if rel is not None and m in rel:
                if m not in ref_scores:
                    ref_scores[m] = {
                        k: rel.scores({m: self.feature_set(model, s).rows(m)[0]})[m] for k, s in refs.items()
                    }
                z = {**ref_scores[m], "shifted": rel.scores({m: own.rows(m)[0]})[m]}
                record |= {"modality": m, "auroc": {k: auroc(z["shifted"], z[k]) for k in refs}}
                record["off_distribution"] = {k: float((v > 0).double().mean()) for k, v in z.items()}
            out[name] = record
        return out

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


def _dev(model: MultiModalModel) -> torch.device:
    return model.heads[model.modalities[0]].weight.device


def absent_modalities(job: Job) -> list[str]:
    """The modalities no training sample has (e.g. audio for image-only annotations): a fine-tune keeps the
    base's branch for them as it is (no uni-modal phase); the fused model learns with them missing."""
    train = job.inputs[job.cfg.train_split]
    return [m for m in sorted(job.specs) if not bool(train[m].present.any())]


def planned_phases(job: Job) -> list[str]:
    """The training phases of :func:`train_models`, in order (for progress bars before they begin)."""
    mods, absent = sorted(job.specs), absent_modalities(job)
    unimodal = [f"unimodal-{m}" for m in mods if m not in absent]
    if len(mods) < 2:
        return unimodal
    return unimodal + ([] if job.finetune else ["naive"]) + ["mma"]


def train_models(job: Job) -> dict[str, MultiModalModel]:
    """Every model of the method: ``<m>-only`` per modality and, with two or more, ``ume``, ``naive``, ``mma``.
    A fine-tune starts the uni-modal models from the base checkpoint and trains no naive baseline."""
    cfg, mods = job.cfg, sorted(job.specs)
    base = job.finetune.base if job.finetune else None
    uni: dict[str, MultiModalModel] = {}
    guarded = base is not None and cfg.branch_guard
    folds = branchguard.make_folds(job, job.annotated_train) if guarded else None
    fold_models: dict[str, list[MultiModalModel]] = {}
    absent = absent_modalities(job)
    if absent and base is None:
        raise DatasetFormatError(f"{cfg.data}: no training sample has {', '.join(absent)}: its branch cannot learn")
    for m in mods:
        unimodal = MultiModalModel(job.model_config([m], "ume"))
        if base is not None:
            finetune.init_unimodal(unimodal, base)
        if m in absent:  # nothing to learn from: the base's branch as it is (frozen while the fusion is refitted)
            uni[m] = unimodal
            job.keep_base.add(m)
            continue
        uni[m] = job.train(f"unimodal-{m}", unimodal, job.unimodal_epochs(m), job.lr([m]), 0.0)
        if guarded:  # the fine-tuned branch replaces the base's only if not worse
            job.guard[m], fold_models[m] = branchguard.check_branch(job, m, base, folds)
            job.log(f"[branch guard] {m}: {job.guard[m]}")
            base_branch = finetune.init_unimodal(MultiModalModel(job.model_config([m], "ume")), base)
            if job.guard[m]["kept"] == "base":
                uni[m] = base_branch
                job.keep_base.add(m)
            elif 0 < job.guard[m].get("alpha", 1.0) < 1:  # WiSE-FT: between the base's weights and the new ones
                uni[m] = keepskills.interpolate(base_branch.to(_dev(uni[m])), uni[m], job.guard[m]["alpha"], uni[m])
    models: dict[str, MultiModalModel] = {f"{m}-only": uni[m] for m in mods}
    if len(mods) < 2:
        return models
    models["ume"] = job.fused_from_unimodal(uni, "ume", fill="drop")
    if folds is not None:  # UME or MMA by the same folds: a few validation items cannot tell them apart
        job.cv_choice = branchguard.choose_fusion(job, base, folds, fold_models, choose_ume_mma, base_mode(base))
        job.log(f"[cross-validated choice] {job.cv_choice}")
    if base is None:
        naive = MultiModalModel(job.model_config(mods, "naive"))
        models["naive"] = job.train("naive", naive, cfg.epochs, job.lr(mods), 0.0)
    mma = job.fused_from_unimodal(uni, "mma", fill=cfg.fill)
    if job.cv_choice is not None and job.cv_choice.get("refit") is False:  # the base's fusion was not worse
        job.log("[mma] the base's fusion kept: its refit was no better by the folds")
        if job.accelerator.is_main_process and cfg.save_all:
            trainstate.save_checkpoint(mma, job.out / "models" / "mma")
        models["mma"] = mma
        return models
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
        "start", resume=resume, finetune=bool(job.finetune), train_rows=len(job.targets[cfg.train_split]),
        phases=planned_phases(job), threads=torch.get_num_threads(), nice=os.nice(0) if hasattr(os, "nice") else None,
    )  # fmt: skip
    if job.finetune:
        if job.finetune.added_labels:
            job.log(f"[new labels] {', '.join(job.finetune.added_labels)}: the heads grow from "
                    f"{len(job.finetune.base_labels)} to {len(job.labels)} labels")  # fmt: skip
        job.finetune.before = job.evaluate(job.finetune.base, cfg.test_split)
        job.progress.write("eval", name="before", accuracy=job.finetune.before["accuracy"])
        if BASE_TEST in job.inputs:
            job.finetune.base_before = job.evaluate(job.finetune.base, BASE_TEST)
            job.progress.write("eval", name="base_before", accuracy=job.finetune.base_before["accuracy"])
    models = train_models(job)
    val = {name: job.evaluate(m, cfg.val_split) for name, m in models.items()}
    test = {name: job.evaluate(m, cfg.test_split) for name, m in models.items()}
    tie = base_mode(job.finetune.base) if job.finetune else "ume"  # a fine-tune's tie keeps the base's (base) fusion
    if job.cv_choice is not None:  # a fine-tune with enough annotations: by K-fold cross-validation over them
        chosen = job.cv_choice["chosen"]
    else:
        chosen = choose_ume_mma({name: v["accuracy"]["full"] for name, v in val.items()}, tie)
    if base_unchanged(job):  # every branch kept and the fusion not refitted: the base checkpoint as it is
        chosen = saved = "base"
        final, calibration = job.finetune.base, {"adopted": False, "branches": {}, "kept_base": True}
        val["base"], test["base"] = job.evaluate(final, cfg.val_split), job.evaluate(final, cfg.test_split)
    else:
        final, calibration = job.calibrate(models[chosen])
        saved = "reliability" if calibration["adopted"] else chosen
    drift_record, prior = None, None
    if cfg.drift_choice and saved != "base":
        prior, prior_saved = final, saved  # the full-modality validation choice, kept for comparison
        final, drift_record = job.choose_under_drift(final)
        if "chosen" in drift_record:
            saved = drift_record["chosen"] if drift_record["mode"] != drift_record["base"] else chosen
    if saved != chosen:
        val[saved], test[saved] = job.evaluate(final, cfg.val_split), job.evaluate(final, cfg.test_split)
    if prior is not None:  # "ume-mma-val": UME-MMA as the full-modality validation choice alone would save it
        test[VAL_CHOICE] = test[saved] if prior is final else job.evaluate(prior, cfg.test_split)
    test["ume-mma"] = test[saved]  # the UME-MMA model as saved (reliability-weighted when validation adopted it)
    metrics = {
        "chosen": chosen,
        "rule": CHOICE_RULE,
        "saved": saved,
        **({"val_choice_saved": prior_saved} if prior is not None else {}),
        "calibration": calibration,
        **({"drift_choice": {k: v for k, v in drift_record.items() if k != "fit_report"}} if drift_record else {}),
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
    if cfg.shifted:
        extra = {VAL_CHOICE: prior} if prior is not None else {}
        metrics["shifted"] = job.shifted_record({**models, "ume-mma": final, **extra}, "ume-mma")
    if job.finetune:
        if BASE_TEST in job.inputs:
            job.finetune.base_after = job.evaluate(final, BASE_TEST)
            job.progress.write("eval", name="base_after", accuracy=job.finetune.base_after["accuracy"])
        metrics["finetune"] = job.finetune.record(test[saved]) | ({"branch_guard": job.guard} if job.guard else {})
        if job.cv_choice is not None:
            metrics["finetune"]["cv_choice"] = job.cv_choice
    if job.accelerator.is_main_process:
        _save_outputs(out, metrics, final)
        job.log(results_notes(metrics))
    job.progress.write("eval", name="after", accuracy=test[saved]["accuracy"])
    job.progress.write("done", chosen=chosen, saved=saved, test_accuracy=test[saved]["accuracy"]["full"])
    job.accelerator.wait_for_everyone()
    job.accelerator.end_training()
    return metrics


def base_unchanged(job: Job) -> bool:
    """Whether a fine-tune changed nothing of its base: the branch guard kept every branch, the folds found the
    refitted fusion no better than the base's and no label was added. The base checkpoint is then saved as it is
    (its own calibration, reliability and correctness fusion: a refit on the few annotations would only lose them)."""
    ft, choice = job.finetune, job.cv_choice
    if ft is None or choice is None or choice.get("refit") is not False or ft.added_labels:
        return False
    return set(job.keep_base) >= set(job.specs)


def _save_outputs(out: Path, metrics: dict[str, Any], chosen: MultiModalModel) -> None:
    """``metrics.json`` and ``checkpoint/`` (the ``saved`` model: its metrics and card record the calibration and
    a fine-tune's parent and before/after)."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    notes = results_notes(metrics) + "\n\n" + reliability_notes(metrics["calibration"])
    if "chosen" in metrics.get("drift_choice", {}):
        from ume_mma.drift_choice import notes as drift_notes

        notes += "\n\n" + drift_notes(metrics["drift_choice"])
    card_metrics = dict(metrics["test"][metrics["saved"]])
    if "finetune" in metrics:
        notes += "\n\n" + finetune.notes(metrics["finetune"])
        if metrics["finetune"].get("branch_guard"):
            notes += "\n" + branchguard.notes(metrics["finetune"]["branch_guard"], metrics["finetune"].get("cv_choice"))
        card_metrics["finetune"] = metrics["finetune"]
    trainstate.save_checkpoint(chosen, out / "checkpoint", metrics=card_metrics, card_notes=notes)


def results_notes(metrics: dict[str, Any]) -> str:
    """The model card's table of every model of the run (test split)."""
    head = (
        f"## All models of this run (test split, seed {metrics['seed']}; "
        f"UME-MMA chose `{metrics['chosen']}` on validation"
        + (f"; saved with reliability weighting, `{metrics['saved']}`" if metrics.get("saved") == "reliability" else "")
        + ")"
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
    args = ap.parse_intermixed_args(argv)  # options anywhere: CONFIG --device cpu seed=1 keeps seed=1 an override
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
    from ume_mma.cli import main_quietly

    main_quietly(main)
