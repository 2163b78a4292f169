"""Fine-tuning from a checkpoint (``init_from``): every part of the base is loaded, replay mixes base rows,
the output records its parent, new labels grow the heads, and bad input (no label in common, a new label without
training rows, a base that does not load) is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from tests.tiny import make_tiny_dataset
from ume_mma.checkpoint import from_pretrained, load_metrics
from ume_mma.train import main, run
from ume_mma.trainconfig import ConfigError, load_config

ENCODERS = {"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest on a busy 2-core machine
    yield
    torch.set_num_threads(threads)


def _config(tmp: Path, out: Path, **keys):
    """The fine-tune's mechanics: the branch guard (which keeps the base wherever a fine-tune on these few rows is
    not better beyond chance) is off unless a test sets it; tests/test_branchguard.py tests it."""
    base = dict(batch_size=8, cache_dir=str(tmp / "cache"), eval_repeats=1, out=str(out), branch_guard=False) | keys
    return load_config(None, [], **base)


class Base(NamedTuple):
    tmp: Path
    data: Path  # the base's dataset
    new: Path  # new data, same labels
    checkpoint: Path  # an MMA model with learned missing tokens


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    tmp = tmp_path_factory.mktemp("finetune")
    data = make_tiny_dataset(tmp / "data", {"train": 8, "val": 3, "test": 3})
    new = make_tiny_dataset(tmp / "new", {"train": 4, "val": 3, "test": 3}, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = _config(tmp, tmp / "base", task="tiny", data=str(data), encoders=ENCODERS, epochs=2, mma_epochs=2)
        cfg.fill = "token"
        run(cfg)
    finally:
        torch.set_num_threads(threads)
    return Base(tmp, data, new, tmp / "base" / "models" / "mma")


def test_config_takes_task_encoders_and_fill_from_the_base(base):
    cfg = load_config(None, [f"init_from={base.checkpoint}"], data=str(base.new), out="o")
    assert (cfg.task, cfg.encoders, cfg.fill) == ("tiny", ENCODERS, "token")
    assert load_config(None, ["fill=zero"], init_from=str(base.checkpoint), data="d", out="o").fill == "zero"


def test_zero_step_finetune_predicts_exactly_like_the_base(base, tmp_path):
    cfg = _config(base.tmp, tmp_path / "ft", init_from=str(base.checkpoint), data=str(base.new), epochs=0, mma_epochs=0)
    metrics = run(cfg)
    parent = from_pretrained(base.checkpoint, load_encoder_weights=False)
    child = from_pretrained(tmp_path / "ft" / "models" / "mma", load_encoder_weights=False)
    assert child.config.fill == "token" and set(child.missing_tokens) == {"audio", "image"}
    assert parent.persistent_state_dict().keys() == child.persistent_state_dict().keys()
    for key, value in parent.persistent_state_dict().items():
        assert torch.equal(value, child.persistent_state_dict()[key]), key
    g = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(6, parent.encoders[m].embed_dim, generator=g) for m in parent.modalities}
    present = {"audio": torch.tensor([1, 1, 0, 0, 1, 1]).bool(), "image": torch.tensor([1, 0, 1, 1, 0, 1]).bool()}
    with torch.no_grad():
        assert torch.equal(parent.forward_features(feats, present).fused, child.forward_features(feats, present).fused)
    for m in parent.modalities:  # the uni-modal models start from the base's branch heads
        uni = from_pretrained(tmp_path / "ft" / "models" / f"unimodal-{m}", load_encoder_weights=False)
        assert torch.equal(uni.heads[m].weight, parent.heads[m].weight)
    record = metrics["finetune"]
    assert record["init_from"] == str(base.checkpoint) and record["data"] == str(base.new)
    assert record["before"]["accuracy"] == metrics["test"]["mma"]["accuracy"]  # nothing was trained
    assert "naive" not in metrics["test"]  # a fine-tune trains no from-scratch baseline


def test_finetune_trains_and_its_card_names_the_parent(base, tmp_path):
    cfg = _config(base.tmp, tmp_path / "ft", init_from=str(base.checkpoint), data=str(base.new), epochs=1, mma_epochs=1)
    metrics = run(cfg)
    folder = tmp_path / "ft" / "checkpoint"
    card = (folder / "README.md").read_text()
    assert f"Fine-tuned from `{base.checkpoint}`" in card and "before (parent)" in card and str(base.new) in card
    saved = load_metrics(folder)
    assert saved["finetune"]["before"]["n"] == 9 and saved["finetune"]["after"] == metrics["test"][metrics["saved"]]
    assert json.loads((folder / "config.json").read_text())["training"]["init_from"] == str(base.checkpoint)
    assert json.loads((folder / "config.json").read_text())["reliability"]["fitted_on"]["stats"] == "train"
    parent = from_pretrained(base.checkpoint, load_encoder_weights=False)
    child = from_pretrained(tmp_path / "ft" / "models" / "mma", load_encoder_weights=False)
    assert not torch.equal(parent.heads["image"].weight, child.heads["image"].weight), "training changed the heads"
    assert not list(tmp_path.glob("ft/.*")), "no temporary folder is left"


def test_replay_mixes_a_share_of_the_base_train_split(base, tmp_path):
    seen: list[int] = []
    from ume_mma.models import MultiModalModel

    forward = MultiModalModel.forward

    def recording(self, inputs, present=None, features=None):
        if self.training and self.modalities == ["image"]:
            seen.append(len(next(iter(present.values()))))
        return forward(self, inputs, present, features)

    # the branch guard's cross-validation folds train too: off, so that `seen` counts the one real epoch
    keys = dict(init_from=str(base.checkpoint), data=str(base.new), epochs=1, mma_epochs=0, batch_size=6)
    keys["branch_guard"] = False
    cfg = _config(base.tmp, tmp_path / "ft", replay=0.5, base_data=str(base.data), **keys)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MultiModalModel, "forward", recording)
        metrics = run(cfg)
    record = metrics["finetune"]
    assert record["replay_rows"] == 12 and record["base_data"] == str(base.data)  # half of the 24 base train rows
    assert metrics["train_rows"] == 12 + 12 and sum(seen) == 24  # one epoch over new + replayed rows
    # with base_data, the parent and the result are also scored on the base data's test split (9 rows)
    assert record["base_before"]["n"] == 9 and record["base_after"]["n"] == 9
    assert record["base_before"]["accuracy"] == parent_test(base)["accuracy"], "the parent on its own test"
    assert "Test split of the base data" in (tmp_path / "ft" / "checkpoint" / "README.md").read_text()
    without = run(_config(base.tmp, tmp_path / "plain", **keys))
    assert without["train_rows"] == 12 and without["finetune"]["replay_rows"] == 0
    assert without["finetune"]["base_before"] is None  # no base_data: no base test split


def parent_test(base: Base) -> dict:
    """The base run's own test evaluation of the parent model (``models/mma``)."""
    return json.loads((base.checkpoint.parents[1] / "metrics.json").read_text())["test"]["mma"]


def _relabel(src: Path, dst: Path, old: str, new: str) -> Path:
    shutil.copytree(src, dst)
    rows = [json.loads(line) for line in (dst / "metadata.jsonl").read_text().splitlines()]
    text = "".join(json.dumps({**r, "label": new if r["label"] == old else r["label"]}) + "\n" for r in rows)
    (dst / "metadata.jsonl").write_text(text)
    return dst


def _cli_config(base: Base, folder: Path, **keys) -> Path:
    path = folder / "ft.json"
    keys = dict(data=str(base.new), out=str(folder / "out"), cache_dir=str(base.tmp / "cache"), epochs=0) | keys
    path.write_text(json.dumps(keys))
    return path


def test_a_label_the_base_does_not_know_grows_the_heads(base, tmp_path, capsys):
    """Data with labels a, b and a new one (zebra: the c rows relabelled): the heads grow by one row; before any
    step the old rows are the base's, bitwise, the new row is their mean with a lower bias, and the result records
    the label history in its config, its card and its metrics."""
    from ume_mma.labelgrow import GROW_MARGIN

    data = _relabel(base.new, tmp_path / "d", "c", "zebra")
    cfg = _config(base.tmp, tmp_path / "ft", init_from=str(base.checkpoint), data=str(data), epochs=0, mma_epochs=0)
    metrics = run(cfg)
    assert "[new labels] zebra: the heads grow from 3 to 4 labels" in capsys.readouterr().out
    parent = from_pretrained(base.checkpoint, load_encoder_weights=False)
    child = from_pretrained(tmp_path / "ft" / "models" / "mma", load_encoder_weights=False)
    assert child.labels == ["a", "b", "c", "zebra"] and child.config.format_version == 4
    assert child.config.label_history == [
        {"source": str(base.checkpoint), "labels": ["a", "b", "c"]},
        {"source": str(data), "labels": ["zebra"]},
    ]
    for m in parent.modalities:
        old, new = parent.heads[m], child.heads[m]
        assert torch.equal(new.weight[:3], old.weight) and torch.equal(new.bias[:3], old.bias)
        assert torch.allclose(new.weight[3], old.weight.mean(0)) and new.bias[3].item() == pytest.approx(
            old.bias.mean().item() - GROW_MARGIN, abs=1e-6
        )
    record = metrics["finetune"]
    assert (record["base_labels"], record["added_labels"]) == (["a", "b", "c"], ["zebra"])
    assert record["before"]["accuracy"] == metrics["test"]["mma"]["accuracy"]  # nothing trained: the grown base
    card = (tmp_path / "ft" / "checkpoint" / "README.md").read_text()
    assert f"**Label history:** a, b, c from `{base.checkpoint}`; zebra from `{data}`" in card
    assert "**New labels:** zebra" in card


def test_a_finetune_learns_the_new_label(base, tmp_path):
    new = make_tiny_dataset(tmp_path / "new", {"train": 8, "val": 3, "test": 3}, seed=2)
    data = _relabel(new, tmp_path / "d", "c", "zebra")
    keys = dict(init_from=str(base.checkpoint), data=str(data), epochs=10, mma_epochs=4, lr=1e-2, head_lr=1e-2)
    metrics = run(_config(base.tmp, tmp_path / "ft", branch_guard=False, **keys))
    record = metrics["finetune"]
    # before: the grown base never answers zebra (a third of the test rows); after: it learned to
    assert record["before"]["accuracy"]["full"] <= 2 / 3 + 1e-6
    assert record["after"]["accuracy"]["full"] > record["before"]["accuracy"]["full"]
    child = from_pretrained(tmp_path / "ft" / "checkpoint", load_encoder_weights=False)
    assert child.labels == ["a", "b", "c", "zebra"] and child.config.label_history[1]["labels"] == ["zebra"]
    # a fine-tune of the fine-tune keeps the history and adds to it
    again = _relabel(data, tmp_path / "d2", "zebra", "yak")
    run(_config(base.tmp, tmp_path / "ft2", init_from=str(tmp_path / "ft" / "checkpoint"), data=str(again),
                epochs=0, mma_epochs=0))  # fmt: skip
    grand = from_pretrained(tmp_path / "ft2" / "models" / "mma", load_encoder_weights=False)
    assert grand.labels == ["a", "b", "c", "zebra", "yak"]
    assert [h["labels"] for h in grand.config.label_history] == [["a", "b", "c"], ["zebra"], ["yak"]]


@pytest.mark.parametrize("case", ["no label in common", "a new label without training rows"])
def test_labels_that_cannot_extend_the_base_are_refused(base, tmp_path, capsys, case):
    data = Path(shutil.copytree(base.new, tmp_path / "d"))
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        if case == "no label in common":
            r["label"] = r["label"].upper()
        elif r["split"] != "train" and r["label"] == "c":
            r["label"] = "zebra"
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _cli_config(base, tmp_path, data=str(data))
    assert main([str(config), f"init_from={base.checkpoint}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    expected = "no label in common" if case == "no label in common" else "new labels ['zebra'] (the base"
    assert expected in err and "does not know" in err
    assert not (tmp_path / "out").exists()


def test_replayed_base_data_must_have_the_base_labels(base, tmp_path, capsys):
    old = _relabel(base.data, tmp_path / "old", "a", "zebra")
    config = _cli_config(base, tmp_path, replay=0.5, base_data=str(old))
    assert main([str(config), f"init_from={base.checkpoint}"]) == 2
    assert "base_data" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "bad config", "bad weights"])
def test_a_base_that_does_not_load_is_refused(base, tmp_path, capsys, case):
    broken = tmp_path / "broken"
    if case != "missing":
        shutil.copytree(base.checkpoint, broken)
        name = "config.json" if case == "bad config" else "model.safetensors"
        (broken / name).write_text("{not json")
    config = _cli_config(base, tmp_path, encoders=ENCODERS, task="tiny")
    assert main([str(config), f"init_from={broken}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not load" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_replay_needs_a_base_and_a_share(base):
    keys = dict(data="d", out="o", init_from=str(base.checkpoint))
    with pytest.raises(ConfigError, match="needs base_data"):
        load_config(None, ["replay=0.3"], **keys)
    with pytest.raises(ConfigError, match="share between 0 and 1"):
        load_config(None, ["replay=1.5", "base_data=x"], **keys)
    with pytest.raises(ConfigError, match="set init_from"):
        load_config(None, ["replay=0.3", "base_data=x"], task="t", data="d", out="o", encoders={})
    with pytest.raises(ConfigError, match="differ from the base checkpoint"):
        load_config(None, ["encoders.audio=scratch.hashed-text"], **keys, encoders=dict(ENCODERS))


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_a_stop_mid_epoch_then_resume_gives_the_uninterrupted_model(base, tmp_path):
    """A stop request in MMA's 2nd epoch, 2nd step (in-process, so exactly there): the state is saved mid-epoch,
    and the resumed run (finished phases loaded, 1 epoch of shuffling replayed, 2 batches skipped, the modality
    dropout generator restored) ends equal to the uninterrupted one."""
    from ume_mma.progress import Stopped
    from ume_mma.train import Job

    keys = dict(init_from=str(base.checkpoint), data=str(base.new), epochs=3, mma_epochs=2, batch_size=4)
    expected = run(_config(base.tmp, tmp_path / "a", **keys))
    calls, step = [], Job._step

    def stopping(self, phase, *args):
        calls.extend([] if phase.name.startswith("cv-") else [1])  # the branch guard's folds are not counted
        if len(calls) == 2 * 9 + 5:  # 3 steps per epoch; 3 epochs per uni-modal phase; then MMA epoch 2, step 2
            self.stop.requested = True
        return step(self, phase, *args)

    cfg = _config(base.tmp, tmp_path / "b", **keys)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Job, "_step", stopping)
        with pytest.raises(Stopped, match="stopped in mma epoch 2, step 2: state saved"):
            run(cfg)
    state = json.loads((tmp_path / "b" / "state" / "mma" / "progress.json").read_text())
    assert state == {"epoch": 0, "step": 2} and not (tmp_path / "b" / "checkpoint").exists()
    resumed = run(cfg, resume=True)
    assert resumed["test"] == expected["test"] and resumed["chosen"] == expected["chosen"]
    for name in ("unimodal-audio", "unimodal-image", "mma"):
        a, b = _tensors(tmp_path / "a" / "models" / name), _tensors(tmp_path / "b" / "models" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def without(data: Path, modality: str, out: Path) -> Path:
    """A copy of ``data`` whose rows have no ``modality``."""
    shutil.copytree(data, out)
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop(modality, None)
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_a_finetune_on_image_only_data_keeps_the_audio_branch_of_the_base(base, tmp_path):
    """Annotations without audio (issue 18): data preparation skips the absent audio (no placeholder reaches
    the audio encoder), no 'unimodal-audio' phase runs, the image branch and the fusion train, and the
    fine-tuned checkpoint keeps both branches."""
    data = without(base.new, "audio", tmp_path / "image-only")
    cfg = _config(base.tmp, tmp_path / "ft", init_from=str(base.checkpoint), data=str(data), epochs=1, mma_epochs=1)
    metrics = run(cfg, progress=tmp_path / "progress.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert lines[0]["phases"] == ["unimodal-image", "mma"]  # no uni-modal audio phase
    assert {x["phase"] for x in lines if x["event"] == "phase"} == {"unimodal-image", "mma"}
    parent = from_pretrained(base.checkpoint, load_encoder_weights=False)
    child = from_pretrained(tmp_path / "ft" / "models" / "mma", load_encoder_weights=False)
    assert child.modalities == parent.modalities  # the fine-tune keeps both branches
    assert not (tmp_path / "ft" / "models" / "unimodal-audio").exists()  # no audio phase, no audio model
    image = from_pretrained(tmp_path / "ft" / "models" / "unimodal-image", load_encoder_weights=False)
    assert not torch.equal(parent.heads["image"].weight, image.heads["image"].weight)  # the image branch learned
    assert metrics["saved"] in ("ume", "mma", "reliability")


def test_a_job_on_data_the_base_cannot_use_is_refused_up_front(base, tmp_path):
    from ume_mma.compat import IncompatibleDataError
    from ume_mma.jobs.api import build_config, validate

    data = without(without(base.new, "audio", tmp_path / "a"), "image", tmp_path / "none")
    rows = [json.loads(line) | {"text": "words"} for line in (data / "metadata.jsonl").read_text().splitlines()]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # text only
    cfg = build_config(None, {"init_from": str(base.checkpoint), "data": str(data)})
    # refused before anything loads: the data's modalities against the base's config (ume_mma.compat)
    with pytest.raises(IncompatibleDataError, match="has text, but init_from=.* reads audio, image: no modality"):
        validate(cfg)
