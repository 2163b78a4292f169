import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import make_tiny_dataset
from ume_mma.evaluate import main as evaluate_main
from ume_mma.train import run
from ume_mma.trainconfig import load_config

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp, out, **over):
    base = dict(
        task="tiny",
        data=str(tmp / "data"),
        out=str(out),
        epochs=3,
        mma_epochs=2,
        batch_size=8,
        cache_dir=str(tmp / "cache"),
        repair="audio",
        encoders={"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn"},
    )
    return load_config(None, [f"{k}={v}" for k, v in over.items()], **base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    make_tiny_dataset(tmp / "data", {"train": 16, "val": 6, "test": 6})
    metrics = run(_config(tmp, tmp / "run", epochs=6))
    return tmp, metrics


def test_end_to_end_outputs(trained):
    tmp, metrics = trained
    out = tmp / "run"
    for name in ("unimodal-audio", "unimodal-image", "naive", "mma"):
        assert (out / "models" / name / "model.safetensors").is_file()
    assert (out / "checkpoint" / "config.json").is_file() and (out / "train_config.json").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["chosen"] in ("ume", "mma") and saved["test"]["ume-mma"] == saved["test"][saved["chosen"]]
    acc = saved["test"]["ume"]["accuracy"]
    assert set(acc) == {
        "full",
        "without_audio",
        "without_image",
        "missing_rate_0.25",
        "missing_rate_0.5",
        "missing_rate_0.75",
    }
    # the image pattern is easy: the trained image model beats chance by far
    assert saved["test"]["image-only"]["accuracy"]["full"] > 0.8
    card = (out / "checkpoint" / "README.md").read_text()
    assert "All models of this run" in card and "| ume |" in card


def test_evaluate_cli_writes_metrics_and_plot(trained, tmp_path):
    tmp, metrics = trained
    rc = evaluate_main(
        [
            str(tmp / "run" / "checkpoint"),
            str(tmp / "data"),
            "--out",
            str(tmp_path / "m.json"),
            "--plot",
            str(tmp_path / "c.png"),
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 18 and 0 <= m["accuracy"]["missing_rate_0.5"] <= 1
    assert set(m["branches"]) == {"audio", "image"}
    assert "branches_by_group" not in m  # the tiny dataset has no groups
    assert m["accuracy"] == pytest.approx(metrics["test"][metrics["chosen"]]["accuracy"])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_cli_reports_bad_data(trained, tmp_path, capsys):
    tmp, _ = trained
    (tmp_path / "metadata.jsonl").write_text('{"label": "a", "image": "nope.png"}\n')
    assert evaluate_main([str(tmp / "run" / "checkpoint"), str(tmp_path)]) == 1
    assert "nope.png" in capsys.readouterr().err


def test_resume_continues_from_last_epoch(trained, tmp_path):
    tmp, _ = trained
    out = tmp_path / "run"
    run(_config(tmp, out, epochs=2, mma_epochs=1))
    progress = json.loads((out / "state" / "naive" / "progress.json").read_text())
    assert progress["epoch"] == 1
    # pretend the naive phase was interrupted after its 2nd epoch and ask for 3 epochs
    import shutil

    shutil.rmtree(out / "models" / "naive")
    before = (out / "models" / "unimodal-image" / "model.safetensors").stat().st_mtime_ns
    run(_config(tmp, out, epochs=3, mma_epochs=1), resume=True)
    assert json.loads((out / "state" / "naive" / "progress.json").read_text())["epoch"] == 2
    assert (out / "models" / "naive" / "model.safetensors").is_file()
    # finished phases are loaded, not retrained
    assert (out / "models" / "unimodal-image" / "model.safetensors").stat().st_mtime_ns == before


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(None, ["bogus=1"], task="t", data="d", out="o", encoders={})
    cfg = load_config(
        None,
        ["seed=4", "encoders.audio=scratch.logmel-cnn", "limit=none"],
        task="t",
        data="d",
        out="o",
        encoders={"image": "x"},
    )
    assert cfg.seed == 4 and cfg.encoders == {"image": "x", "audio": "scratch.logmel-cnn"} and cfg.limit is None
    assert load_config(None, ["head_epochs=2"], task="t", data="d", out="o", encoders={}).head_epochs == 2
    with pytest.raises(ValueError):
        load_config(None, ["epochs=many"], task="t", data="d", out="o", encoders={})


def test_two_process_accelerate_run(trained, tmp_path):
    tmp, _ = trained
    config = tmp_path / "c.toml"
    config.write_text(
        f'task = "tiny"\ndata = "{tmp / "data"}"\nout = "{tmp_path / "run"}"\n'
        "epochs = 1\nmma_epochs = 1\nbatch_size = 8\n"
        f'cache_dir = "{tmp / "cache"}"\n[encoders]\nimage = "scratch.image-cnn"\naudio = "scratch.logmel-cnn"\n'
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        "-m",
        "ume_mma.train",
        str(config),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["chosen"] in ("ume", "mma")
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
