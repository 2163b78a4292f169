"""The new-task numbers README.md and docs/finetune.md quote are bench/results/new_task.json's
(bench/bench_new_task.py --save), and that run is what a new task promises: labels no shipped checkpoint has, the
defaults by size, the test split a voice no model trained on."""

import json
from pathlib import Path

from ume_mma.newtask import size_defaults

ROOT = Path(__file__).resolve().parent.parent
RESULT = json.loads((ROOT / "bench" / "results" / "new_task.json").read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def docs_sentence(r: dict) -> str:
    acc, s = r["test"]["ume-mma"], r["settings"]
    return (
        f"spoken-icons ({r['rows']['train']} train, {r['rows']['val']} val and {r['rows']['test']} test rows, the "
        f"test split the held-out voice {r['build_info']['test_voice']}), trained with the defaults by size "
        f"({s['epochs']} epochs, MMA {s['mma_epochs']}, batch {s['batch_size']}), scored {_pct(acc['full'])} on "
        f"the test split, {_pct(acc['without_audio'])} without audio, {_pct(acc['without_image'])} without image "
        f"and {_pct(acc['without_text'])} without text (UME-MMA chose `{r['chosen']}`, saved `{r['saved']}`); the "
        f"audio branch alone {_pct(r['test']['audio-only']['full'])}, UME before the reliability weighting "
        f"{_pct(r['test']['ume']['without_image'])} without image; the job took {r['job_s']:.0f} s on this "
        f"{r['machine']['cpus']}-core CPU"
    )


def readme_sentence(r: dict) -> str:
    return (
        f"{_pct(r['test']['ume-mma']['full'])} on the test split of a voice it never heard, in "
        f"{r['job_s']:.0f} s on this {r['machine']['cpus']}-core CPU"
    )


def test_the_docs_and_readme_quote_the_result():
    docs = " ".join((ROOT / "docs" / "finetune.md").read_text().split())
    assert docs_sentence(RESULT) in docs
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert readme_sentence(RESULT) in readme


def test_the_result_is_a_new_task_with_the_defaults_by_size():
    shipped = set()
    for config in (ROOT / "checkpoints").glob("*/config.json"):
        shipped |= set(json.loads(config.read_text())["labels"])
    assert RESULT["labels"] and not set(RESULT["labels"]) & shipped, "labels no shipped checkpoint has"
    defaults = size_defaults(RESULT["rows"]["train"])
    assert {k: RESULT["settings"][k] for k in defaults} == defaults
    assert RESULT["test_rows"] == RESULT["rows"]["test"] and RESULT["build_info"]["test_voice"] == "pc_diphone"
    assert RESULT["job_s"] >= RESULT["train_s"] > 0
