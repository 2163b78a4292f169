"""The benchmark scripts' input builders still read the repository's files (a bench that breaks silently
would report nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_bench_inputs(tmp_path):
    import bench_app
    import bench_predict
    import gpu_check

    mods = ["audio", "image"]
    assert all(Path(p).is_file() for p in bench_predict.default_inputs(mods).values())
    assert len(bench_predict.distinct_requests(mods, tmp_path)) == bench_predict.BATCH
    assert len(bench_app.distinct_inputs(mods, 3, tmp_path)) == 3
    requests = gpu_check.example_requests()
    assert requests and all(Path(p).is_file() for r in requests for k, p in r.items() if k != "text")
