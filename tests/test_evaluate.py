"""Evaluation on a toy model whose every accuracy is known exactly.

The image branch always predicts the right class and dominates the fusion; the audio branch always
predicts the next class. So: full = 1, without image = 0 (audio alone), without audio = 1, and at
missing rate r a sample is wrong exactly when it loses its image, which happens with probability r/2.
"""

import pytest
import torch

from ume_mma.evaluate import evaluate_features
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec
from ume_mma.report import MISSING_RATES

LABELS = ["a", "b", "c"]
N = 3000


def _toy(fusion: str) -> MultiModalModel:
    config = ModelConfig(
        task="toy",
        labels=LABELS,
        fusion=fusion,
        fill="zero",
        encoders={"image": get_spec("scratch.image-cnn").to_dict(), "audio": get_spec("scratch.logmel-cnn").to_dict()},
    )
    model = MultiModalModel(config)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.zero_()
            head.bias.zero_()
        for c in range(len(LABELS)):
            model.heads["image"].weight[c, c] = 10.0  # right, confidently
            model.heads["audio"].weight[(c + 1) % len(LABELS), c] = 1.0  # wrong, less confidently
    return model.eval()


def _features(model: MultiModalModel, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """The encoder output of each modality: the one-hot target in its first dimensions."""
    feats = {}
    for m in model.modalities:
        f = torch.zeros(len(targets), model.encoders[m].embed_dim)
        f[torch.arange(len(targets)), targets] = 1.0
        feats[m] = f
    return feats


@pytest.mark.parametrize("fusion", ["mma", "ume", "naive"])
def test_known_accuracies(fusion):
    model = _toy(fusion)
    targets = torch.arange(N) % len(LABELS)
    present = {m: torch.ones(N, dtype=torch.bool) for m in model.modalities}
    out = evaluate_features(model, _features(model, targets), present, targets, seed=0, repeats=3)
    accuracy = out["accuracy"]
    assert out["n"] == N and out["branches"] == {"image": 1.0, "audio": 0.0}
    assert accuracy["full"] == 1.0
    assert accuracy["without_audio"] == 1.0
    assert accuracy["without_image"] == 0.0  # only the (always wrong) audio branch is left
    for rate in MISSING_RATES:
        assert accuracy[f"missing_rate_{rate}"] == pytest.approx(1 - rate / 2, abs=0.025), rate


def test_without_skips_samples_left_with_nothing():
    model = _toy("mma")
    targets = torch.arange(N) % len(LABELS)
    present = {"image": torch.ones(N, dtype=torch.bool), "audio": torch.arange(N) < N // 3}
    accuracy = evaluate_features(model, _features(model, targets), present, targets)["accuracy"]
    # without image only the N/3 samples that have audio remain, all wrong; without audio every sample is right
    assert accuracy["without_image"] == 0.0 and accuracy["without_audio"] == 1.0
    # only samples with both modalities can lose one: the image is lost by (N/3) * r/2 of N samples
    for rate in MISSING_RATES:
        assert accuracy[f"missing_rate_{rate}"] == pytest.approx(1 - rate / 6, abs=0.02), rate
