import pytest
import torch

from ume_mma.augment import missing_rate_mask, modality_dropout
from ume_mma.report import MISSING_RATES


def _mask(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(n, generator=g) < 0.8 for m in ("audio", "image", "text")}


def test_never_drops_all_and_never_adds():
    present = _mask()
    out = modality_dropout(present, 1.0, torch.Generator().manual_seed(1))
    stacked_in = torch.stack([present[m] for m in sorted(present)], 1)
    stacked_out = torch.stack([out[m] for m in sorted(out)], 1)
    assert not (stacked_out & ~stacked_in).any()  # nothing missing becomes present
    had = stacked_in.any(1)
    assert stacked_out[had].any(1).all()  # never all dropped


def test_p1_drops_exactly_one_when_two_or_more_present():
    present = _mask()
    out = modality_dropout(present, 1.0, torch.Generator().manual_seed(2))
    n_in = torch.stack(list(present.values()), 1).sum(1)
    n_out = torch.stack([out[m] for m in present], 1).sum(1)
    assert torch.equal(n_out[n_in >= 2], n_in[n_in >= 2] - 1)
    assert torch.equal(n_out[n_in < 2], n_in[n_in < 2])


def test_p0_is_identity_and_inputs_untouched():
    present = _mask()
    copy = {m: v.clone() for m, v in present.items()}
    out = modality_dropout(present, 0.0, torch.Generator().manual_seed(3))
    for m in present:
        assert torch.equal(out[m], copy[m]) and torch.equal(present[m], copy[m])


def test_seeded_and_rate_matches_p():
    present = {m: torch.ones(20000, dtype=torch.bool) for m in ("audio", "image")}
    a = modality_dropout(present, 0.3, torch.Generator().manual_seed(7))
    b = modality_dropout(present, 0.3, torch.Generator().manual_seed(7))
    c = modality_dropout(present, 0.3, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[m], b[m]) for m in a)
    assert any(not torch.equal(a[m], c[m]) for m in a)
    lost = (~a["audio"] | ~a["image"]).float().mean().item()
    assert abs(lost - 0.3) < 0.02
    # the dropped modality is chosen uniformly
    assert abs((~a["audio"]).float().mean().item() - 0.15) < 0.015


def test_missing_rate_mask_same_protocol():
    present = {m: torch.ones(100, dtype=torch.bool) for m in ("audio", "image")}
    out = missing_rate_mask(present, 0.5, torch.Generator().manual_seed(0))
    assert (out["audio"] | out["image"]).all()


def test_rejects_bad_probability():
    with pytest.raises(ValueError):
        modality_dropout({"a": torch.ones(2, dtype=torch.bool)}, 1.5, torch.Generator())


@pytest.mark.parametrize("rate", MISSING_RATES)
def test_missing_rate_mask_loses_a_modality_at_the_requested_rate(rate):
    """The evaluation protocol "missing rate r": a fraction r of the samples (that can lose one) loses one."""
    n = 20000
    g = torch.Generator().manual_seed(11)
    present = {"audio": torch.ones(n, dtype=torch.bool), "image": torch.ones(n, dtype=torch.bool)}
    present["text"] = torch.rand(n, generator=g) < 0.5  # some samples have 3 modalities, others 2
    out = missing_rate_mask(present, rate, g)
    n_in = torch.stack([present[m] for m in sorted(present)], 1).sum(1)
    n_out = torch.stack([out[m] for m in sorted(present)], 1).sum(1)
    assert abs((n_out < n_in).float().mean().item() - rate) < 0.015
    assert set((n_in - n_out).tolist()) == {0, 1}  # never more than one modality lost
    for m in ("audio", "image"):  # the lost modality is chosen uniformly among the present ones
        expected = rate * ((present["text"].float() / 3) + (~present["text"]).float() / 2).mean().item()
        assert abs((~out[m]).float().mean().item() - expected) < 0.015
