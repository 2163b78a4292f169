"""The few-label numbers the docs quote are bench/results/fewlabel.json's (bench/bench_fewlabel.py --save), and the
keep-the-base's-skills sweep's are bench/results/fewlabel_sweep.json's."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_fewlabel  # noqa: E402

RESULT = json.loads((ROOT / "bench" / "results" / "fewlabel.json").read_text())
SWEEP = json.loads((ROOT / "bench" / "results" / "fewlabel_sweep.json").read_text())["variants"]


def _mean(shift: str, base_data: str, split: str) -> str:
    rows = [r for r in RESULT["runs"] if (r["shift"], r["base_data"], r["guard"]) == (shift, base_data, True)]
    assert len(rows) == 3
    return f"{100 * sum(r['accuracy'][split]['fused'] for r in rows) / len(rows):.1f}%"


def _text(path: str) -> str:
    return " ".join((ROOT / path).read_text().split())


def test_the_docs_table_and_goals_are_the_results_file():
    docs = (ROOT / "docs" / "finetune.md").read_text()
    assert RESULT["seeds"] == 3 and RESULT["k"] == 50 and RESULT["order"] == "mixed"
    assert RESULT["recipe"]["wise_ft"] is True and {r["base_data"] for r in RESULT["runs"]} == {"none", "replay"}
    assert bench_fewlabel.table(RESULT) in docs
    assert bench_fewlabel.goals(RESULT) in docs


def test_the_targets_follow_from_the_runs():
    assert bench_fewlabel.targets(RESULT["runs"], RESULT["shipped"]) == RESULT["targets"]


def test_the_readme_quotes_the_guarded_runs():
    readme = _text("README.md")
    replay, none = _mean("both", "replay", "heldout"), _mean("both", "none", "heldout")
    kept = _mean("both", "replay", "original_test"), _mean("both", "none", "original_test")
    assert f"goes to {replay} with 10% replay of the original data and {none} without a base data folder" in readme
    assert f"the original test set stays at {kept[0]} and {kept[1]}" in readme
    assert "replay memory of 300 training rows and 200 held-out rows" in readme


def test_the_base_on_the_held_out_rows_is_the_runs():
    """docs/finetune.md: on the memory's held-out rows the base's audio branch is right on 77.5%, its image branch
    on 98.0% (every guarded run scores them, with or without base data)."""
    text = _text("docs/finetune.md")
    guards = [(m, v) for r in RESULT["runs"] for m, v in r["branch_guard"].items()]
    seen = {(m, round(100 * v["heldout_rows"]["base"], 1)) for m, v in guards}
    assert seen == {("audio", 77.5), ("image", 98.0)}
    assert "(audio 77.5%, image 98.0%)" in text


def test_the_sweep_numbers_in_the_docs_are_the_sweep_file():
    text = _text("docs/finetune.md")
    (wise,) = [r for r in SWEEP["E"]["runs"] if r["shift"] == "image"]
    (kd,) = [r for r in SWEEP["F"]["runs"] if r["shift"] == "image"]
    assert SWEEP["F"]["recipe"]["distill"] == 1.0 and "distill" not in SWEEP["E"]["recipe"]
    pct = {k: f"{100 * r['accuracy'][s]['fused']:.1f}%" for k, r, s in (("wo", wise, "original_test"),
           ("ko", kd, "original_test"), ("wh", wise, "heldout"), ("kh", kd, "heldout"))}  # fmt: skip
    assert (f"`distill=1` kept {pct['ko']} of the original test on the image shift against {pct['wo']} without "
            f"it, and gave {pct['kh']} held-out against {pct['wh']}") in text  # fmt: skip
    audio = [f"{100 * r['accuracy']['heldout']['audio']:.1f}%" for r in (kd, wise)]
    assert f"its audio branch there fell to {audio[0]} (from {audio[1]})" in text


def test_the_docs_words_on_the_runs_are_the_results_file():
    text = _text("docs/finetune.md")
    t, ship = RESULT["targets"], {s: 100 * v["heldout"]["fused"] for s, v in RESULT["shipped"].items()}
    audio = [r for r in RESULT["runs"] if r["shift"] == "audio"]
    assert all(r["chosen"] == "base" and r["kept"] == ["audio", "image"] for r in audio)  # saved as it is
    assert f"the shipped checkpoint already gives {ship['audio']:.1f}" in text
    assert f"the `audio` goal ({100 * t['audio/none/guard-on']['heldout_goal']:.1f}) cannot be met" in text
    gains = sorted(100 * t[f"image/{b}/guard-on"]["heldout_fused_mean"] - ship["image"] for b in ("none", "replay"))
    assert (round(gains[0]), round(gains[1])) == (5, 6)
    assert f"gains 5 to 6 points over the shipped {ship['image']:.1f}" in text
    drop = 100 * t["image/none/guard-on"]["original_test_worst_drop"]
    assert f"loses up to {drop:.1f} points in one seed" in text
    both = {b: 100 * t[f"both/{b}/guard-on"]["heldout_fused_mean"] - ship["both"] for b in ("none", "replay")}
    worst, goal = (100 * t["both/none/guard-on"][k] for k in ("heldout_fused_worst", "heldout_goal"))
    assert f"gains {both['none']:.1f} points without a base data folder (worst seed {worst:.1f}" in text
    assert f"below the goal of {goal:.1f}) and {both['replay']:.1f} with 10% replay" in text
