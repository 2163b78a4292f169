"""The two-server numbers the docs and the README quote are bench/results/two_servers.json's
(bench/bench_two_servers.py --save), and that run kept every promise it checks."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_two_servers  # noqa: E402

RESULT = json.loads((ROOT / "bench" / "results" / "two_servers.json").read_text())


def test_the_run_kept_every_promise():
    r = RESULT
    assert r["clients"] == 16 and r["seconds"] >= 55 and 0 < r["killed_A_at_s"] < r["seconds"]
    assert r["clients_moved_to_B"] == r["clients"] // 2  # every client of the killed process carried on
    assert r["acknowledged"] > 0 and r["acknowledged_found"] == r["acknowledged"] and r["acknowledged_lost"] == 0
    assert r["acknowledged_duplicated"] == 0 and r["annotations_in_db"] >= r["acknowledged"]
    assert r["items_handed_to_more_than_overlap"] == 0 and r["max_annotators_handed_one_item"] <= r["overlap"]
    assert r["items_over_overlap"] == r["items_with_one_annotator_twice"] == r["done_without_exactly_overlap"] == 0
    assert r["not_done_with_overlap"] == 0 and r["stats_agree"] is True
    assert r["stats"]["labels_given"] == r["annotations_in_db"] and r["stats"]["labelled"] == r["done_items"]
    assert sum(r["acknowledged_on"].values()) == r["acknowledged"] and min(r["acknowledged_on"].values()) > 0


def test_the_docs_table_is_the_results_file():
    assert bench_two_servers.table(RESULT) in (ROOT / "docs" / "annotation.md").read_text()


def test_the_readme_quotes_the_run():
    readme = " ".join((ROOT / "README.md").read_text().split())
    r = RESULT
    assert (
        f"16 clients over two processes for a minute, one killed with SIGKILL at half time, gave "
        f"{r['acknowledged']} acknowledged labels, {r['acknowledged_lost']} lost, no item over its overlap, "
        f"the same stats from both ({r['submits_per_s']['all']} submits/s in all on {r['cpu_count']} shared cores;"
    ) in readme
