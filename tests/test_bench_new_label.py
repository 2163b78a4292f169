"""The new-label numbers docs/training.md quotes are bench/results/new_label.json's (bench/bench_new_label.py
--save), and that result is what label growth promises: the base's labels kept in order, Plants appended, the grown
base never answering Plants before training."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = json.loads((ROOT / "bench" / "results" / "new_label.json").read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def sentence(r: dict) -> str:
    return (
        f"{r['plants_rows']['train']} train and {r['plants_rows']['test']} test rows; the fine-tune took "
        f"{r['elapsed_s']:.0f} s on this 2-core CPU): the Plants test rows went from {_pct(r['before']['plants'])} "
        f"to {_pct(r['after']['plants'])}, the other test rows from {_pct(r['before']['other'])} to "
        f"{_pct(r['after']['other'])}"
    )


def test_the_docs_quote_the_result():
    text = " ".join((ROOT / "docs" / "training.md").read_text().split())
    assert sentence(RESULT) in text


def test_the_result_is_what_growth_promises():
    base = json.loads((ROOT / "checkpoints" / "emoji-vl" / "config.json").read_text())["labels"]
    assert RESULT["labels"] == [*base, "Plants"] and RESULT["before"]["plants"] == 0.0
    assert RESULT["settings"]["branch_guard"] is False and RESULT["machine"]["threads"] >= 1
