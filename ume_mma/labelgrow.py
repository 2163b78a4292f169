"""New labels in a fine-tune: the base checkpoint's heads grow by one row per label it does not know.

What stays (before any training step):

- **Old rows, bitwise.** Row ``c < C`` of every head (weight and bias) is the base's, so an old label keeps its
  index and its logits on every input.
- **Old answers.** A new row starts as the *mean* of the old rows, its bias lowered by :data:`GROW_MARGIN`: its
  logit is ``mean_c z_c - GROW_MARGIN``, below the largest old logit on every input. Late fusion (``mma``,
  ``naive``, and ``reliability`` weighting over them: a positively weighted sum of branch logits, fills included)
  keeps the base's predicted label on every input, and the old labels' fused probabilities keep their ratios. UME
  averages per-branch probabilities, each branch renormalised over the new labels too: a new label takes at most
  ``eps = k * exp(-GROW_MARGIN) / C`` of a branch's mass (Jensen; ``k`` new labels, ``C`` old ones), so each old
  label's fused probability shrinks by a factor in ``[1 / (1 + eps), 1]``: the answer is the base's wherever its
  top two labels were more than that factor apart (``eps`` = 2.7% for 2 new labels on 10). The new label starts
  as the "average class" minus a margin: plausible enough (``e^-2`` of the typical class's odds) that training
  moves it at once.
- **Reliability.** Each branch's distance statistics get one class mean per new label, a copy of class 0's: the
  nearest-mean distance, hence the reliability and the fusion weights, are those of the base. The correctness
  estimate was fitted on the old label count (its entropy signal is divided by ``log C``): a grown model has none
  (a fine-tune fits its own calibration anyway).

The config records where each label came from (``ModelConfig.label_history``): the base's labels under the
base's name (or the base's own history), then the new ones under the data that brought them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import nn

from ume_mma.models import MultiModalModel

GROW_MARGIN = 2.0  # a new label's logit starts this far below the mean of the old labels' logits


def added_labels(base_labels: Iterable[str], data_labels: Iterable[str]) -> list[str]:
    """The labels of the data the base does not know, sorted (the order they are appended in)."""
    return sorted(set(data_labels) - set(base_labels))


def grow_head(head: nn.Linear, k: int, margin: float = GROW_MARGIN) -> nn.Linear:
    """``Linear(D, C + k)``: rows ``:C`` copied from ``head`` (``Linear(D, C)``), each new row the mean of the old
    rows with bias ``mean(bias) - margin``."""
    c, d = head.out_features, head.in_features
    new = nn.Linear(d, c + k).to(device=head.weight.device, dtype=head.weight.dtype)
    with torch.no_grad():
        new.weight[:c].copy_(head.weight)
        new.bias[:c].copy_(head.bias)
        new.weight[c:].copy_(head.weight.mean(0, keepdim=True).expand(k, d))  # (k, D)
        new.bias[c:].fill_(float(head.bias.mean()) - margin)
    return new


def history(model: MultiModalModel, parent: str, source: str, added: list[str]) -> list[dict]:
    """The label history of ``model`` grown by ``added``: its own history (or its labels under ``parent``), then
    ``added`` under ``source``."""
    past = model.config.label_history or [{"source": parent, "labels": list(model.labels)}]
    return [*(dict(h, labels=list(h["labels"])) for h in past), {"source": source, "labels": list(added)}]


def grow(model: MultiModalModel, added: list[str], *, parent: str, source: str) -> MultiModalModel:
    """``model`` with ``added`` appended to its labels (see the module docstring for what is kept). ``parent``
    names the model (its first history entry, if it has no history), ``source`` the data with the new labels.
    Encoders and missing tokens are shared with ``model``; heads and reliability statistics are new tensors."""
    if not added:
        return model
    clash = sorted(set(added) & set(model.labels))
    if clash or len(set(added)) != len(added):
        raise ValueError(f"labels to add must be new and distinct; {clash or added} are not")
    cfg = model.config
    config = dataclasses.replace(
        cfg,
        labels=[*model.labels, *added],
        label_history=history(model, parent, source, added),
        correctness=None,  # fitted for the old labels; a correctness-weighted model falls back to its base mode
        fusion=cfg.correctness["base"] if cfg.fusion == "correctness" else cfg.fusion,
    )
    heads = nn.ModuleDict({m: grow_head(model.heads[m], len(added)) for m in model.modalities})
    new = model.derive(config, heads)
    if model.reliability is not None:
        state = {}
        for m, stats in model.reliability.items():
            for name, value in stats.state_dict().items():
                if name == "means":  # [C, D] -> [C + k, D]: the new labels copy class 0's mean
                    value = torch.cat([value, value[:1].expand(len(added), -1)])
                state[f"{m}.{name}"] = value.clone()
        new.reliability.load_state_dict(state)
    return new.train(model.training)
