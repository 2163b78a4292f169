"""The results job end to end on a tiny dataset: two families, two seeds, tables and plots."""

import json

import pytest

from tests.tiny import make_noise_shift, make_tiny_dataset
from ume_mma import results


@pytest.fixture()
def tiny_benchmark(tmp_path, monkeypatch):
    make_tiny_dataset(tmp_path / "data", {"train": 8, "val": 4, "test": 4})
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
    return tmp_path


def test_results_tables_plots_and_best_family(tiny_benchmark):
    tmp = tiny_benchmark
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
