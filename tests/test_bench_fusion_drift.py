"""The fusion-under-drift numbers the docs quote are bench/results/fusion_drift.json's, and the shipped
checkpoints are the ones that bench measured (bench/bench_fusion_drift.py --save)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_fusion_drift  # noqa: E402

RESULT = json.loads((ROOT / "bench" / "results" / "fusion_drift.json").read_text())


def test_the_docs_table_is_the_results_file():
    docs = (ROOT / "docs" / "correctness.md").read_text()
    assert bench_fusion_drift.table(RESULT) in docs


def test_the_goals_are_read_from_the_runs():
    sets = [s for c in RESULT["checkpoints"].values() for s in c["sets"].values()]
    assert len(sets) == 14
    for s in sets:
        assert s["gap"] == s["fused"]["chosen"] - s["better_branch"] and s["met"]["gap"] == (s["gap"] >= -1)
        assert s["cost"] == s["fused"]["chosen"] - s["fused"]["mma"]
    docs = " ".join((ROOT / "docs" / "correctness.md").read_text().split())
    met_gap, met_cost = sum(s["met"]["gap"] for s in sets), sum(s["met"]["cost"] for s in sets)
    assert f"met on all {len(sets)} sets" in docs and met_gap == len(sets)
    assert f"met on {met_cost} of {len(sets)}" in docs
    rel = [next(v for k, v in s["fused"].items() if k.startswith("reliability@")) for s in sets]
    below = sum(r < s["fused"]["mma"] for r, s in zip(rel, sets))
    assert f"stays below plain MMA on {below} of {len(sets)}" in docs


def test_the_shipped_checkpoints_are_the_ones_measured():
    for name, ck in RESULT["checkpoints"].items():
        config = json.loads((ROOT / "checkpoints" / name / "config.json").read_text())
        assert config["fusion"] == "correctness" and config["correctness"]["choice"]["chosen"] == ck["chosen"]
        assert config["correctness"]["choice"]["table"] == ck["choice_table"]


def test_the_readme_quotes_the_runs():
    readme = " ".join((ROOT / "README.md").read_text().split())
    sets = [s for c in RESULT["checkpoints"].values() for s in c["sets"].values()]
    assert all(s["gap"] >= 0 for s in sets)  # "at or above the better branch"
    met_cost = sum(s["met"]["cost"] for s in sets)
    assert f"on all {len(sets)} shifted sets we measure, the fused answer is at or above the better branch" in readme
    assert f"within 0.5 points of plain MMA on {met_cost} of them" in readme


def test_the_estimate_s_predict_cost_is_the_results_file():
    p = json.loads((ROOT / "bench" / "results" / "predict.json").read_text())
    docs = " ".join((ROOT / "docs" / "correctness.md").read_text().split())
    pct = 100 * p["correctness_over_encoders"]["median"]
    assert f"{p['correctness_ms']:.2f} ms, {pct:.2f}% of the encoders' time (goal <= 5%, met;" in docs and pct <= 5
