"""The few-label numbers the docs quote are bench/results/fewlabel.json's (bench/bench_fewlabel.py --save)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_fewlabel  # noqa: E402

RESULT = json.loads((ROOT / "bench" / "results" / "fewlabel.json").read_text())
MEMORY = json.loads((ROOT / "bench" / "results" / "fewlabel_memory.json").read_text())  # no base data: the memory


def _mean(shift: str, base_data: str, guard: bool, split: str, result: dict = RESULT) -> str:
    rows = [r for r in result["runs"] if (r["shift"], r["base_data"], r["guard"]) == (shift, base_data, guard)]
    return f"{100 * sum(r['accuracy'][split]['fused'] for r in rows) / len(rows):.1f}%"


def test_the_docs_tables_are_the_results_files():
    docs = (ROOT / "docs" / "finetune.md").read_text()
    for result in (RESULT, MEMORY):
        assert result["seeds"] == 3 and result["k"] == 50
        assert bench_fewlabel.table(result) in docs


def test_the_readme_quotes_the_guarded_runs():
    readme = " ".join((ROOT / "README.md").read_text().split())
    replay, none = _mean("both", "replay", True, "heldout"), _mean("both", "none", True, "heldout", MEMORY)
    kept = _mean("both", "replay", True, "original_test"), _mean("both", "none", True, "original_test", MEMORY)
    assert f"goes to {replay} with 10% replay of the original data and {none} without a base data folder" in readme
    assert f"the original test set stays at {kept[0]} and {kept[1]}" in readme
    assert "replay memory of 300 training rows" in readme


def test_the_targets_follow_from_the_runs():
    for result in (RESULT, MEMORY):
        assert bench_fewlabel.targets(result["runs"], result["shipped"]) == result["targets"]


def test_the_docs_reason_for_the_image_shift_is_in_the_runs():
    """docs/finetune.md: on the image shift the base's audio branch is right on 39% of the annotations (by the
    guard's cross-validation), against 80% on the held-out part."""
    text = " ".join((ROOT / "docs" / "finetune.md").read_text().split())
    assert "its audio branch is right on 39% of them, against 80% held out" in text
    runs = [r for r in RESULT["runs"] if r["shift"] == "image" and r["guard"]]
    assert runs and all(round(100 * r["branch_guard"]["audio"]["base"]) == 39 for r in runs)
    assert round(100 * RESULT["shipped"]["image"]["heldout"]["audio"]) == 80


def test_the_docs_words_on_the_memory_runs_are_the_results_file():
    text = " ".join((ROOT / "docs" / "finetune.md").read_text().split())
    assert MEMORY["order"] == "mixed"
    m = {s: _mean(s, "none", True, "heldout", MEMORY)[:-1] for s in ("both", "image", "audio")}
    worst = MEMORY["targets"]["both/none/guard-on"]["heldout_fused_worst"]
    assert f"50 labels take the `both` shift from 67.2 to {m['both']} (worst seed {100 * worst:.1f};" in text
    assert m["both"] == _mean("both", "none", False, "heldout", MEMORY)[:-1]  # "the guard changes nothing there"
    assert f"the image shift to {m['image']} (the base's audio branch kept in two seeds;" in text
    assert f"the audio shift to {m['audio']} (both branches kept in two seeds, which give 98.3;" in text
    runs = {s: [r for r in MEMORY["runs"] if r["shift"] == s and r["guard"]] for s in ("image", "audio")}
    assert sum("audio" in r["kept"] for r in runs["image"]) == 2
    kept_both = [r for r in runs["audio"] if r["kept"] == ["audio", "image"]]
    assert len(kept_both) == 2 and all(round(100 * r["accuracy"]["heldout"]["fused"], 1) == 98.3 for r in kept_both)
    (third,) = [r for r in runs["audio"] if r not in kept_both]
    assert "audio" not in third["kept"]
    assert f"the fine-tuned audio branch passed the guard: {100 * third['accuracy']['heldout']['fused']:.1f})" in text
    rows = [v["base_rows"] for r in MEMORY["runs"] if r["guard"] for v in r["branch_guard"].values()]
    assert {(round(100 * b["base"], 1)) for b in rows} == {100.0, 98.7}  # the base on its own training rows
    assert "(audio 100%, image 98.7%, against 79.5% and 97.1% on its test set)" in text
    shipped = MEMORY["shipped"]["both"]["original_test"]
    assert (round(100 * shipped["audio"], 1), round(100 * shipped["image"], 1)) == (79.5, 97.1)
    orig = _mean("image", "none", True, "original_test", MEMORY)[:-1]
    assert f"the original test set falls on the image shift ({orig} with the guard)" in text
