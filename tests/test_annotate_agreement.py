"""Agreement formulas against reference implementations (the ``krippendorff`` package, scikit-learn) and
published worked examples (Krippendorff's reliability data, the Fleiss kappa example table)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ume_mma.annotate.agreement import agreement_report, cohen_kappa, fleiss_kappa, krippendorff_alpha, majority

krippendorff = pytest.importorskip(
    "krippendorff", reason="the reference implementation: pip install krippendorff==0.9.0"
)

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, values 1-5,
# "." = no value. Published: alpha (nominal) = 0.743.
KRIPPENDORFF_2011 = [
    "1 2 3 3 2 1 4 1 2 . . .",
    "1 2 3 3 2 2 4 1 2 5 . 3",
    ". 3 3 3 2 3 4 2 2 5 1 .",
    "1 2 3 3 2 4 4 1 2 5 1 .",
]

# The worked example of Fleiss' kappa (Wikipedia, "Fleiss' kappa"): 10 subjects, 14 raters, 5 categories;
# published: P-bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def units_of(rows: list[str]) -> list[list[str]]:
    table = [r.split() for r in rows]
    return [[row[u] for row in table if row[u] != "."] for u in range(len(table[0]))]


def reference_alpha(units: list[list[str]], categories: list[str]) -> float:
    """The krippendorff package on the same units (observers x units, NaN = missing)."""
    width = max(len(u) for u in units)
    data = np.full((width, len(units)), np.nan)
    for j, unit in enumerate(units):
        for i, value in enumerate(unit):
            data[i, j] = categories.index(value)
    return krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")


def test_krippendorffs_own_example():
    units = units_of(KRIPPENDORFF_2011)
    alpha = krippendorff_alpha(units)
    assert round(alpha, 3) == 0.743
    assert alpha == pytest.approx(reference_alpha(units, ["1", "2", "3", "4", "5"]), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_alpha_equals_the_reference_on_random_tables(seed):
    rng = random.Random(seed)
    labels = ["a", "b", "c", "d"][: rng.randint(2, 4)]
    units = []
    for _ in range(rng.randint(5, 40)):
        truth = rng.choice(labels)
        units.append([truth if rng.random() < 0.6 else rng.choice(labels) for _ in range(rng.randint(1, 5))])
    assert krippendorff_alpha(units) == pytest.approx(reference_alpha(units, labels), abs=1e-9)


def test_fleiss_worked_example_and_per_category_kappas():
    categories = ["1", "2", "3", "4", "5"]
    units = [[c for c, n in zip(categories, row, strict=True) for _ in range(n)] for row in FLEISS_TABLE]
    kappa, per = fleiss_kappa(units)
    assert round(kappa, 3) == 0.210
    # Fleiss (1971): kappa is the p_j q_j weighted mean of the per-category kappas
    p = {c: sum(row[j] for row in FLEISS_TABLE) / 140 for j, c in enumerate(categories)}
    weights = {c: p[c] * (1 - p[c]) for c in categories}
    assert sum(weights[c] * per[c] for c in categories) / sum(weights.values()) == pytest.approx(kappa)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["a", "b"], ["a", "b", "b"]])


@pytest.mark.parametrize("seed", range(4))
def test_cohen_equals_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    pairs = [(rng.choice("xyz"), rng.choice("xyz")) for _ in range(rng.randint(5, 50))]
    pairs += [(x, x) for x, _ in pairs[: len(pairs) // 2]]  # some agreement
    expected = metrics.cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs])
    assert cohen_kappa(pairs) == pytest.approx(expected, abs=1e-12)


def test_undefined_measures_are_none_and_majority_ties_are_none():
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None  # no disagreement could be expected
    assert krippendorff_alpha([["a"], ["b"]]) is None  # nothing pairable
    assert cohen_kappa([]) is None and cohen_kappa([("a", "a")]) is None
    assert majority(["a", "b"]) is None and majority(["a", "b", "a"]) == "a" and majority([]) is None


def test_report_on_a_known_table():
    """Three annotators, overlap 2, labels chosen by hand; every number worked out on paper."""
    labels = {
        1: {"ann": "cat", "bob": "cat"},
        2: {"ann": "dog", "bob": "cat"},
        3: {"bob": "dog", "cy": "dog"},
        4: {"ann": "cat", "cy": "dog"},
        5: {"ann": "dog", "cy": "dog"},
        6: {"cy": "cat"},  # one label: rests on nothing
    }
    report = agreement_report(labels, resolved={4: "cat"}, gold={5: "dog", 2: "cat"}, raters=2)
    assert report["items"] == 5 and report["fleiss_items"] == 5 and report["raters_per_item"] == 2
    units = [list(by.values()) for by in labels.values() if len(by) == 2]
    assert report["krippendorff_alpha"] == round(reference_alpha(units, ["cat", "dog"]), 4)
    assert report["fleiss_kappa"] == round(fleiss_kappa(units)[0], 4)
    pairs = {tuple(p["annotators"]): p for p in report["pairs"]}
    assert pairs[("ann", "bob")]["items"] == 2 and pairs[("ann", "bob")]["agreement"] == 0.5
    assert pairs[("ann", "cy")]["items"] == 2 and pairs[("bob", "cy")]["items"] == 1
    ann = report["annotators"]["ann"]
    # ann's consensus: item 1 bob's cat (agree), 2 bob's cat (disagree), 4 the resolution cat (agree), 5 cy's dog
    assert (ann["labels"], ann["items"], ann["agreement"]) == (4, 4, 0.75)
    assert (ann["gold_items"], ann["gold_accuracy"]) == (2, 0.5)
    assert report["annotators"]["cy"]["agreement"] == round(2 / 3, 4)  # 3: bob dog ok, 4: resolved cat, 5: ok
    assert report["labels"]["cat"]["values"] + report["labels"]["dog"]["values"] == 10
    assert not math.isnan(report["labels"]["cat"]["fleiss_kappa"])
