"""The results job end to end on a tiny dataset: two families, two seeds, tables and plots."""

import json

import pytest

from tests.tiny import make_noise_shift, make_tiny_dataset
from ume_mma import results


@pytest.fixture()
def tiny_benchmark(tmp_path, monkeypatch):
    make_tiny_dataset(tmp_path / "data", {"train": 8, "val": 6, "test": 4})
    make_noise_shift(tmp_path / "data", tmp_path / "noise")
    configs = {}
    for family, audio in (("scratch", "scratch.logmel-cnn"), ("pretrained", "packaged.whisper-tiny-en")):
        configs[family] = tmp_path / f"{family}.toml"
        configs[family].write_text(
            f'task = "tiny"\ndata = "{tmp_path / "data"}"\nout = "unused"\nepochs = 2\nmma_epochs = 1\nbatch_size = 8\n'
            f'cache_dir = "{tmp_path / "cache"}"\neval_repeats = 1\n'
            f'[encoders]\nimage = "scratch.image-cnn"\naudio = "{audio}"\n'
            f'[shifted]\n"image shifted" = "{tmp_path / "noise"}"\n'
        )
    bench = {"build": [], "families": {k: str(v) for k, v in configs.items()}, "shifts": {"image shifted": "image"}}
    monkeypatch.setitem(results.BENCHMARKS, "tiny", bench)
    import ume_mma.drift_choice as dc

    drift_set = dc.drift_set  # every run chooses under drift: fewer candidates and one severity, at a tiny run's cost
    monkeypatch.setattr(dc, "drift_set", lambda model, rows, **kw: drift_set(model, rows, severities=(1.0,), **kw))
    monkeypatch.setattr(dc, "ALPHAS", (4.0,))
    monkeypatch.setattr(dc, "TAUS", (1.0,))
    monkeypatch.setattr(dc, "RELIABILITY_ALPHAS", (0.0, 2.0))
    return tmp_path


def _cells(table: str, start: str, n: int = 9) -> list[str]:
    """The cells of the first row starting with ``start`` that has ``n`` cells (9: the choice table's)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith(start)]
    return next(cells for cells in rows if len(cells) == n)


def test_results_tables_plots_and_best_family(tiny_benchmark, monkeypatch):
    tmp = tiny_benchmark
    import ume_mma.correctness_fit as cf
    import ume_mma.drift_choice as dc

    seen = []  # every sample the drift-aware choice fits or chooses on
    fit, drift_set = cf.fit_correctness, dc.drift_set
    monkeypatch.setattr(cf, "fit_correctness", lambda model, rows, **kw: seen.extend(rows) or fit(model, rows, **kw))
    monkeypatch.setattr(dc, "drift_set", lambda model, rows, **kw: seen.extend(rows) or drift_set(model, rows, **kw))
    assert (
        results.main(
            ["--benchmarks", "tiny", "--seeds", "0", "1", "--runs", str(tmp / "runs"), "--results", str(tmp / "res")]
        )
        == 0
    )
    table = (tmp / "res" / "tiny.md").read_text()
    for family in ("scratch", "pretrained", "best"):
        assert f"| {family} |" in table
    for row in ("audio-only", "image-only", "naive", "ume", "mma", "ume-mma"):
        assert f"| {row} |" in table
    assert " ± " in table and "MR50" in table
    data = json.loads((tmp / "res" / "tiny.json").read_text())
    # the shifted set is a column of the main table and a row of the drift table per drawn family
    header = next(line for line in table.splitlines() if line.startswith("| encoders | model |"))
    assert header.endswith("| MR75 | image shifted |")
    for family in ("scratch", "pretrained"):
        runs = data[family].values()
        row = next(line for line in table.splitlines() if line.startswith(f"| {family} | image shifted |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        best = [max(r["shifted"]["image shifted"]["accuracy"][f"{m}-only"] for m in ("audio", "image")) for r in runs]
        fused = [r["shifted"]["image shifted"]["accuracy"]["ume-mma"] for r in runs]
        assert cells[2].startswith(f"{100 * sum(best) / 2:.1f} ± ") and cells[3].startswith(
            f"{100 * sum(fused) / 2:.1f}"
        )
        assert cells[5].endswith("(image)")  # the AUROC is the shifted branch's
    assert set(data) == {"scratch", "pretrained", "best"} and set(data["best"]) == {"0", "1"}
    # the best family takes, per modality, the encoder of the family whose uni-modal model won on validation
    for seed in ("0", "1"):
        order = ["scratch", "pretrained"]
        val = {f: data[f][seed]["val"]["audio-only"]["accuracy"]["full"] for f in order}
        winner = max(order, key=lambda f: (val[f], order.index(f)))  # ties go to the pre-trained family
        assert data["best"][seed]["encoders"]["audio"] == data[winner][seed]["encoders"]["audio"]
    assert (tmp / "res" / "tiny-missing-rate.png").read_bytes()[:4] == b"\x89PNG"
    # every run chose its fusion under drift on validation only: never a row of the shifted set or of test
    assert seen and all(s.split == "val" and s.root == tmp / "data" for s in seen)
    for family in ("scratch", "pretrained"):
        runs = list(data[family].values())
        kept = [r["drift_choice"].get("chosen", "skipped") for r in runs]
        assert any(k != "skipped" for k in kept), kept
        assert f"the drift-aware choice kept: {', '.join(kept)}" in table
        for where, name in (("image shifted", "image shifted"), ("test (in-distribution)", None)):

            def acc(r, row, name=name):
                return r["shifted"][name]["accuracy"][row] if name else r["test"][row]["accuracy"]["full"]

            cells = _cells(table, f"| {family} | {where} |")
            val = [acc(r, "ume-mma-val") for r in runs]
            drift = [acc(r, "ume-mma") for r in runs]
            cost = [d - acc(r, "mma") for d, r in zip(drift, runs)]
            assert cells[3].startswith(f"{100 * sum(val) / 2:.1f} ± ")
            assert cells[5].startswith(f"{100 * sum(drift) / 2:.1f} ± ")
            assert cells[7].startswith(f"{100 * sum(cost) / 2:.1f} ± ")
            assert cells[7].endswith(f"({100 * min(cost):+.1f})")
            assert cells[8] == "met" or cells[8].startswith("missed: ")
    # a second call reuses finished runs
    mtime = (tmp / "runs" / "tiny" / "scratch" / "seed0" / "metrics.json").stat().st_mtime_ns
    results.main(["--benchmarks", "tiny", "--seeds", "0", "--runs", str(tmp / "runs"), "--results", str(tmp / "res")])
    assert (tmp / "runs" / "tiny" / "scratch" / "seed0" / "metrics.json").stat().st_mtime_ns == mtime


def test_best_family_mixes_winners_and_reuses_their_unimodal_models(tiny_benchmark, monkeypatch):
    tmp = tiny_benchmark
    monkeypatch.setattr(
        results, "_best_family", lambda out, m, seed, families: {"image": "scratch", "audio": "pretrained"}[m]
    )
    assert (
        results.main(
            ["--benchmarks", "tiny", "--seeds", "0", "--runs", str(tmp / "runs"), "--results", str(tmp / "res")]
        )
        == 0
    )
    best = json.loads((tmp / "runs" / "tiny" / "best" / "seed0" / "metrics.json").read_text())
    assert best["encoders"] == {"image": "scratch.image-cnn", "audio": "packaged.whisper-tiny-en"}
    runs = tmp / "runs" / "tiny"
    for m, family in (("image", "scratch"), ("audio", "pretrained")):
        copied = (runs / "best" / "seed0" / "models" / f"unimodal-{m}" / "model.safetensors").read_bytes()
        assert copied == (runs / family / "seed0" / "models" / f"unimodal-{m}" / "model.safetensors").read_bytes()
    assert (runs / "best" / "seed0" / "models" / "mma" / "model.safetensors").is_file()
    assert (
        best["test"]["image-only"]
        == json.loads((runs / "scratch" / "seed0" / "metrics.json").read_text())["test"]["image-only"]
    )


def _run(best: float, val: float, drift: float, mma: float, chosen: str) -> dict:
    """A run's metrics as the choice table reads them: the same accuracies on the shifted set and on test."""
    acc = {"audio-only": best - 0.1, "image-only": best, "ume-mma-val": val, "ume-mma": drift, "mma": mma}
    return {
        "encoders": {"audio": "a", "image": "i"},
        "test": {k: {"accuracy": {"full": v}} for k, v in acc.items()},
        "shifted": {"image shifted": {"accuracy": acc}},
        "drift_choice": {"chosen": chosen},
    }


def test_the_choice_table_compares_both_choices_with_the_better_branch_and_mma():
    """Numbers with known answers: seed 0 drift-aware 2 points above the better branch, seed 1 1.6 below (worst
    seed missed), plain MMA 0.8 above the drift-aware one in seed 1 (cost missed)."""
    runs = {"scratch": {0: _run(0.50, 0.40, 0.52, 0.51, "correctness@4"), 1: _run(0.60, 0.55, 0.584, 0.592, "mma")}}
    rows = results.choice_rows(runs)
    assert [r["set"] for r in rows] == ["image shifted", "test (in-distribution)"]
    row = rows[0]
    assert row["which"] == ["image", "image"]
    assert row["val_gaps"] == pytest.approx([-0.10, -0.05], abs=1e-9)
    assert row["drift_gaps"] == pytest.approx([0.02, -0.016], abs=1e-9)
    assert row["cost"] == pytest.approx([0.01, -0.008], abs=1e-9)
    table = results.choice_table(runs)
    cells = _cells(table, "| scratch | image shifted |")
    assert cells[2] == "55.0 ± 7.1 (image)" and cells[3] == "47.5 ± 10.6" and cells[4] == "-7.5 ± 3.5 (-10.0)"
    assert cells[5] == "55.2 ± 4.5" and cells[6] == "0.2 ± 2.5 (-1.6)" and cells[7] == "0.1 ± 1.3 (-0.8)"
    assert cells[8] == "missed: worst seed, cost vs MMA"
    good = {"scratch": {0: _run(0.50, 0.40, 0.52, 0.51, "mma"), 1: _run(0.60, 0.55, 0.595, 0.597, "mma")}}
    assert _cells(results.choice_table(good), "| scratch | image shifted |")[8] == "met"
    low = {"scratch": {0: _run(0.50, 0.40, 0.48, 0.47, "mma"), 1: _run(0.60, 0.55, 0.585, 0.58, "mma")}}
    assert _cells(results.choice_table(low), "| scratch | image shifted |")[8] == "missed: mean"  # -1.75 on average
    section = results.choice_section("tiny", runs)
    assert "the drift-aware choice kept: correctness@4, mma" in section
    # runs without the drift-aware choice (no "ume-mma-val") give no table
    for run in runs["scratch"].values():
        del run["test"]["ume-mma-val"]
    assert results.choice_rows(runs) == [] and results.choice_table(runs) == ""
