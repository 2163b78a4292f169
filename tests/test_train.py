import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from tests.tiny import make_noise_shift, make_tiny_dataset
from ume_mma.evaluate import main as evaluate_main
from ume_mma.models import MultiModalModel
from ume_mma.train import choose_ume_mma, main, make_accelerator, run
from ume_mma.trainconfig import ConfigError, load_config

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


class Trained(NamedTuple):
    tmp: Path
    metrics: dict
    masks: dict[str, list[dict[str, torch.Tensor]]]  # phase -> the presence mask of every training step


def _phase(model: MultiModalModel) -> str:
    return f"{model.config.fusion}:{'+'.join(model.modalities)}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real tiny run; every presence mask a phase feeds the model while training is recorded."""
    tmp = tmp_path_factory.mktemp("train")
    make_tiny_dataset(tmp / "data", {"train": 16, "val": 6, "test": 6})
    make_noise_shift(tmp / "data", tmp / "noise")
    masks: dict[str, list[dict[str, torch.Tensor]]] = {}
    forward = MultiModalModel.forward

    def recording_forward(self, inputs, present=None, features=None):
        if self.training:
            masks.setdefault(_phase(self), []).append({m: v.detach().cpu().clone() for m, v in present.items()})
        return forward(self, inputs, present, features)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MultiModalModel, "forward", recording_forward)
        metrics = run(_config(tmp, tmp / "run", epochs=6, **{"shifted.image noise": str(tmp / "noise")}))
    return Trained(tmp, metrics, masks)


def test_shifted_sets_are_scored_but_never_trained_on(trained):
    """``cfg.shifted``: every model's accuracy on the shifted set, the shifted branch's reliability AUROC (noise
    images against the test images) and the share flagged; training never fed those rows."""
    tmp, metrics, masks = trained
    rec = metrics["shifted"]["image noise"]
    assert rec["rows"] == 18 and rec["modality"] == "image"
    assert set(rec["accuracy"]) == {"audio-only", "image-only", "naive", "ume", "mma", "ume-mma"}
    assert rec["accuracy"]["audio-only"] == metrics["test"]["audio-only"]["accuracy"]["full"]  # audio unchanged
    assert rec["accuracy"]["image-only"] < metrics["test"]["image-only"]["accuracy"]["full"]
    assert rec["auroc"]["val"] > 0.9 and rec["auroc"]["test"] > 0.9
    assert rec["off_distribution"]["shifted"] > max(rec["off_distribution"]["test"], rec["off_distribution"]["val"])
    assert rec["branches"]["image"] < metrics["test"][metrics["saved"]]["branches"]["image"]
    assert metrics["train_rows"] == 48  # 16 per label: the shifted rows are not in training
    assert json.loads((tmp / "run" / "metrics.json").read_text())["shifted"] == metrics["shifted"]


def test_only_mma_trains_with_modality_dropout(trained):
    masks = trained.masks
    assert set(masks) == {"ume:audio", "ume:image", "naive:audio+image", "mma:audio+image"}
    for phase in ("ume:audio", "ume:image", "naive:audio+image"):  # the tiny dataset has every modality
        assert all(bool(v.all()) for step in masks[phase] for v in step.values()), phase
    mma = torch.cat([torch.stack([step["audio"], step["image"]], 1) for step in masks["mma:audio+image"]])  # (N, 2)
    assert len(mma) == 2 * 48  # mma_epochs x the 48 training rows
    assert mma.any(1).all(), "a sample never loses every modality"
    lost = (~mma).any(1).float().mean().item()
    assert 0.3 < lost < 0.7, f"dropout_p=0.5, but {lost:.2f} of the MMA training samples lost a modality"
    assert (~mma[:, 0]).any() and (~mma[:, 1]).any(), "either modality can be dropped"


@pytest.mark.parametrize(
    ("full", "chosen"),
    [
        ({"audio-only": 0.5, "image-only": 0.9, "naive": 0.99, "ume": 0.8, "mma": 0.85}, "mma"),
        ({"audio-only": 0.5, "image-only": 0.9, "naive": 0.99, "ume": 0.85, "mma": 0.8}, "ume"),
        ({"ume": 0.8, "mma": 0.8}, "ume"),  # a tie keeps UME
        ({"ume": float("nan"), "mma": 0.8}, "ume"),  # NaN (nothing to score) never wins for MMA
        ({"image-only": 0.7}, "image-only"),  # a single-modality run
    ],
)
def test_choose_ume_mma(full, chosen):
    assert choose_ume_mma(full) == chosen


def test_a_fine_tune_of_an_mma_checkpoint_keeps_mma_on_a_tie():
    assert choose_ume_mma({"ume": 0.8, "mma": 0.8}, tie="mma") == "mma"
    assert choose_ume_mma({"ume": 0.8, "mma": 0.6}, tie="mma") == "ume", "a tie rule, not a preference"
    assert choose_ume_mma({"ume": float("nan"), "mma": float("nan")}, tie="mma") == "ume"
    assert choose_ume_mma({"ume": 0.8, "mma": 0.8}, tie="ume") == "ume"


def test_choose_ume_mma_refuses_runs_without_ume_and_mma():
    for full in ({"audio-only": 0.5, "image-only": 0.9}, {"ume": 0.5}, {}):
        with pytest.raises(ValueError, match="UME-MMA needs"):
            choose_ume_mma(full)


def test_end_to_end_outputs(trained):
    tmp, metrics, _ = trained
    out = tmp / "run"
    for name in ("unimodal-audio", "unimodal-image", "naive", "mma"):
        assert (out / "models" / name / "model.safetensors").is_file()
    assert (out / "checkpoint" / "config.json").is_file() and (out / "train_config.json").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["chosen"] in ("ume", "mma") and saved["test"]["ume-mma"] == saved["test"][saved["saved"]]
    assert saved["chosen"] == choose_ume_mma({name: v["accuracy"]["full"] for name, v in saved["val"].items()})
    # every saved model (and the chosen one) records the run's training config, built in, not patched in
    training = json.loads((out / "train_config.json").read_text())
    for folder in ("models/unimodal-image", "models/naive", "models/mma", "checkpoint"):
        assert json.loads((out / folder / "config.json").read_text())["training"] == training, folder
    chosen = json.loads((out / "checkpoint" / "config.json").read_text())
    assert chosen["fill"] == ("drop" if saved["chosen"] == "ume" else "zero")
    # the checkpoint is the UME-MMA choice with calibration and reliability fields, reliability-weighted if adopted
    rel = saved["calibration"]
    assert rel["base"] == saved["chosen"] and saved["saved"] == ("reliability" if rel["adopted"] else saved["chosen"])
    assert chosen["fusion"] == saved["saved"] and chosen["format_version"] == 2
    assert set(chosen["reliability"]["branches"]) == {"audio", "image"}
    assert chosen["reliability"]["fitted_on"] | {"stats": "train", "val": "val"} == chosen["reliability"]["fitted_on"]
    if rel["adopted"]:
        assert chosen["reliability"]["base"] == saved["chosen"] and chosen["reliability"]["alpha"] == rel["alpha"] > 0
        assert rel["alphas"][str(rel["alpha"])]["full"] >= rel["alphas"]["0.0"]["full"]
        assert saved["val"]["reliability"]["accuracy"]["full"] >= saved["val"][saved["chosen"]]["accuracy"]["full"]
    for m in ("audio", "image"):
        assert rel["branches"][m]["nll_after"] <= rel["branches"][m]["nll_before"] + 1e-9
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
    assert "All models of this run" in card and "| ume |" in card and "## Calibration and reliability" in card
    for folder in ("models/mma", "models/naive"):  # the other models are saved as trained, without the fields
        assert "reliability" not in json.loads((out / folder / "config.json").read_text())


def test_evaluate_cli_writes_metrics_and_plot(trained, tmp_path):
    tmp, metrics, _ = trained
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
    assert m["n"] == 18 and 0 <= m["accuracy"]["missing_rate_0.5"] <= 1 and m["split"] == "test"
    assert set(m["branches"]) == {"audio", "image"}
    assert "branches_by_group" not in m  # the tiny dataset has no groups
    assert m["accuracy"] == pytest.approx(metrics["test"][metrics["saved"]]["accuracy"])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_cli_reports_bad_data(trained, tmp_path, capsys):
    tmp = trained.tmp
    (tmp_path / "metadata.jsonl").write_text('{"label": "a", "image": "nope.png"}\n')
    assert evaluate_main([str(tmp / "run" / "checkpoint"), str(tmp_path)]) == 1
    assert "nope.png" in capsys.readouterr().err


def test_resume_continues_from_last_epoch(trained, tmp_path):
    tmp = trained.tmp
    out = tmp_path / "run"
    run(_config(tmp, out, epochs=2, mma_epochs=1))
    progress = json.loads((out / "state" / "naive" / "progress.json").read_text())
    assert progress["epoch"] == 1
    # pretend the naive phase was interrupted after its 2nd epoch and ask for 3 epochs
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
    tmp = trained.tmp
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


def _config_file(tmp: Path, folder: Path, **over) -> Path:
    """A TOML training config for the tiny dataset in ``tmp``."""
    keys = {"task": "tiny", "data": str(tmp / "data"), "out": str(folder / "run"), "epochs": 1, "mma_epochs": 1}
    keys |= {"batch_size": 8, "cache_dir": str(tmp / "cache"), **over}
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path = folder / "c.toml"
    path.write_text("\n".join(lines) + '\n[encoders]\nimage = "scratch.image-cnn"\naudio = "scratch.logmel-cnn"\n')
    return path


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no GPU is present")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["foo=1"], "unknown config key 'foo'"),
        (["epochs=abc"], "override 'epochs=abc': expected int, got 'abc'"),
        (["epochs"], "override 'epochs' is not key=value"),
        (["--config-file", "missing.toml"], "missing.toml: cannot read the config file"),
        (["--config-file", "bad.toml"], "bad.toml: invalid TOML"),
        (["--config-file", "typed.toml"], "config key 'epochs': expected int, got 'three'"),
        (["--config-file", "partial.toml"], "missing required config keys ['encoders']"),
        pytest.param(["--device", "cuda"], "no CUDA GPU is available", marks=NO_CUDA),
    ],
)
def test_train_cli_usage_errors_are_one_line_exit_2(trained, tmp_path, capsys, args, message):
    config = _config_file(trained.tmp, tmp_path)
    (tmp_path / "bad.toml").write_text("epochs = = 3\n")
    (tmp_path / "typed.toml").write_text(config.read_text().replace("epochs = 1", 'epochs = "three"'))
    (tmp_path / "partial.toml").write_text(config.read_text().split("[encoders]")[0])
    if args[0] == "--config-file":
        argv = [str(tmp_path / args[1])]
    else:
        argv = [str(config), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists(), "nothing is trained"


def test_train_cli_error_has_no_traceback(trained, tmp_path):
    """The real command line: one line on stderr, exit status 2."""
    config = _config_file(trained.tmp, tmp_path)
    cmd = [sys.executable, "-m", "ume_mma.train", str(config), "foo=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown config key 'foo'") and proc.stderr.count("\n") == 1


def test_config_errors_are_value_errors():
    with pytest.raises(ConfigError, match="unknown config keys"):
        load_config(None, [], task="t", data="d", out="o", encoders={}, notes="")  # notes/extra were removed
    assert issubclass(ConfigError, ValueError)


def test_train_cli_device_cpu_runs(trained, tmp_path):
    config = _config_file(trained.tmp, tmp_path, limit=12)
    assert main([str(config), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["chosen"] in ("ume", "mma")


def test_make_accelerator_passes_the_device(monkeypatch):
    import accelerate

    asked = []

    class Recording(accelerate.Accelerator):
        def __init__(self, *args, **kwargs):
            asked.append(kwargs.get("cpu", False))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(accelerate, "Accelerator", Recording)
    assert make_accelerator("cpu").device.type == "cpu"
    make_accelerator("auto")
    assert asked == [True, False]  # auto leaves the choice (and multi-GPU placement) to Accelerate


@NO_CUDA
def test_evaluate_cli_cuda_without_gpu_exits_2(trained, capsys):
    tmp = trained.tmp
    assert evaluate_main([str(tmp / "run" / "checkpoint"), str(tmp / "data"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no CUDA GPU" in err and err.count("\n") == 1


def test_evaluate_cli_without_splits_evaluates_every_sample(trained, tmp_path, capsys):
    tmp = trained.tmp
    data = Path(shutil.copytree(tmp / "data", tmp_path / "nosplit"))
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in row.items() if k != "split"} for row in rows]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "m.json"
    assert evaluate_main([str(tmp / "run" / "checkpoint"), str(data), "--out", str(out), "--device", "cpu"]) == 0
    assert f"no sample of {data} has a split: evaluating all {len(rows)} samples" in capsys.readouterr().out
    m = json.loads(out.read_text())
    assert m["n"] == len(rows) == 84 and m["split"] == "all" and "no sample has a split" in m["split_note"]


def test_training_can_choose_the_fusion_under_drift(trained, tmp_path):
    """drift_choice=true: the run fits a correctness estimate and chooses the fusion on validation and held-out
    drift families; the saved checkpoint carries the estimate, the choice and its card section."""
    from ume_mma.checkpoint import from_pretrained

    metrics = run(_config(trained.tmp, tmp_path / "run", drift_choice="true", drift_choice_rows=12))
    record = metrics["drift_choice"]
    assert "skipped" not in record, record
    assert record["conditions"] and record["table"][record["base"]]["worst"] == 0.0
    ok = [
        k
        for k, r in record["table"].items()
        if min(r["full"] - record["table"][record["base"]]["full"], r["worst"]) >= -0.005 - 1e-9
    ]
    assert record["chosen"] in ok
    model = from_pretrained(tmp_path / "run" / "checkpoint")
    assert model.config.correctness is not None and model.config.fusion == record["mode"]
    assert model.config.correctness["choice"]["chosen"] == record["chosen"]
    assert "## Fusion chosen under drift" in (tmp_path / "run" / "checkpoint" / "README.md").read_text()
    saved = metrics["saved"]
    assert metrics["test"]["ume-mma"] == metrics["test"][saved]
