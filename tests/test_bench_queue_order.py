"""The queue-order numbers docs/annotation.md quotes are bench/results/queue_order.json's (bench_annotation_loop.py
--orders mixed random disagreement --base-setting none --save --out bench/results/queue_order.json), and the
default order follows from them."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_annotation_loop  # noqa: E402

from ume_mma.annotate import DEFAULT_ORDER  # noqa: E402

RESULT = json.loads((ROOT / "bench" / "results" / "queue_order.json").read_text())


def test_the_docs_table_is_the_results_file():
    assert RESULT["seeds"] == 3 and RESULT["ks"] == [25, 50, 100] and RESULT["base_setting"] == "none"
    docs = (ROOT / "docs" / "annotation.md").read_text()
    assert bench_annotation_loop.order_table(RESULT) in docs


def test_the_order_targets_follow_from_the_runs():
    orders = sorted({r["order"] for r in RESULT["runs"]})
    assert orders == ["disagreement", "mixed", "random"]
    assert len(RESULT["runs"]) == 3 * 3 * 3  # orders x seeds x K
    ks, want = RESULT["ks"], RESULT["order_targets"]
    got = bench_annotation_loop.order_targets(RESULT["runs"], ks, [o for o in bench_annotation_loop.ORDERS])
    assert got == json.loads(json.dumps(want))


def test_the_default_order_is_mixed_only_where_it_beats_random_at_every_k():
    wins = RESULT["order_targets"]["mixed_ge_random_every_k"]
    assert DEFAULT_ORDER == ("mixed" if wins else "disagreement")


def _mean(order: str, k: int, split: str = "heldout") -> str:
    vals = [r["accuracy"][split]["fused"] for r in RESULT["runs"] if r["order"] == order and r["k"] == k]
    return f"{100 * sum(vals) / len(vals):.1f}"


def test_the_docs_words_are_the_results_files():
    text = " ".join((ROOT / "docs" / "annotation.md").read_text().split())
    gains = RESULT["order_targets"]["mixed_minus_random"]
    assert f"(+{100 * gains['25']:.1f}, +{100 * gains['50']:.1f} and +{100 * gains['100']:.1f} points)" in text
    assert RESULT["order_targets"]["mixed_k_reaching_random_k100"] == 25
    assert f"below `disagreement` at K = 50 ({_mean('mixed', 50)} against {_mean('disagreement', 50)})" in text
    lows = [min(100 * r["accuracy"]["heldout"]["fused"] for r in RESULT["runs"] if r["order"] == o and r["k"] == 100)
            for o in ("random", "disagreement")]  # fmt: skip
    assert f"(those runs score {lows[0]:.1f} and {lows[1]:.1f})" in text
    orig = [_mean(o, k, "original_test") for k in (100, 50) for o in ("mixed", "random", "disagreement")]
    assert (f"{orig[0]} (mixed), {orig[1]} (random) and {orig[2]} (disagreement) at K = 100, from "
            f"{100 * RESULT['shipped']['original_test']['fused']:.1f} (at K = 50: {orig[3]}, {orig[4]} and {orig[5]})"
            in text)  # fmt: skip
