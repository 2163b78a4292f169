"""Held-out evidence of a fine-tune: Wilson intervals against known values, and the "too few to tell" rule."""

import pytest

from ume_mma.evidence import MIN_ITEMS, held_out_evidence, interval, paired_worse


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (45, 50, 0.7864, 0.9565), (25, 50, 0.3664, 0.6336)],
)
def test_wilson_intervals_match_the_closed_form(k, n, low, high):
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964; values to 4 decimals."""
    got = interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def _eval(n, acc):
    return {"n": n, "accuracy": {"full": acc}}


def test_few_items_are_too_few_to_tell_whatever_the_change():
    e = held_out_evidence(_eval(6, 0.5), _eval(6, 1.0))
    assert e["verdict"] == "too few to tell" and 6 < MIN_ITEMS
    assert e["after_interval"][0] < 1.0 and e["n"] == 6


def test_a_change_outside_the_interval_is_told_and_one_inside_is_not():
    assert held_out_evidence(_eval(50, 0.5), _eval(50, 0.9))["verdict"] == "better"  # [0.786, 0.957] excludes 0.5
    assert held_out_evidence(_eval(50, 0.9), _eval(50, 0.5))["verdict"] == "worse"
    assert held_out_evidence(_eval(50, 0.80), _eval(50, 0.86))["verdict"] == "too few to tell"
    assert held_out_evidence(None, _eval(50, 0.9)) is None


def _hits(right: int, n: int, offset: int = 0):
    import torch

    return torch.tensor([offset <= i < offset + right for i in range(n)])


def test_paired_worse_needs_more_than_the_tolerance_and_more_than_chance():
    base = _hits(296, 300)  # right on rows 0..295
    assert not paired_worse(base, _hits(292, 300), 0.01)  # 4 rows lost, none won: 1.3 points, p = 0.125
    assert paired_worse(base, _hits(290, 300), 0.01)  # 6 lost: 2 points, p = 0.031
    assert not paired_worse(base, _hits(290, 300), 0.03)  # within the tolerance
    # 20 lost, 14 won (net 2 points) is chance; the same net 2 points as 6 lost, 0 won is not
    assert not paired_worse(_hits(200, 300), _hits(194, 300, offset=20), 0.01)
    assert paired_worse(_hits(200, 300), _hits(194, 300), 0.01)
    assert not paired_worse(_hits(0, 0), _hits(0, 0), 0.01)
