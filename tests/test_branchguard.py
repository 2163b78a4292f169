"""The branch guard: a fine-tune keeps a branch of the base where its fine-tuned version is worse by cross-validation
over the annotations' groups, and that branch stays the base's, bit for bit, through the fusion's refit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import LABELS, digit_image, make_tiny_dataset
from ume_mma import replaymemory
from ume_mma.branchguard import BASE_TOLERANCE, MIN_ROWS, group_folds
from ume_mma.checkpoint import from_pretrained
from ume_mma.train import run
from ume_mma.trainconfig import load_config

ENCODERS = {"image": "scratch.image-cnn", "audio": "scratch.logmel-cnn"}
SHIFT = {label: LABELS[(i + 1) % len(LABELS)] for i, label in enumerate(LABELS)}  # a -> b's band, b -> c's, ...


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp: Path, out: Path, **keys):
    base = dict(batch_size=8, cache_dir=str(tmp / "cache"), eval_repeats=1, out=str(out)) | keys
    return load_config(None, [], **base)


def test_folds_keep_groups_together_and_are_about_equal():
    groups = ["s1"] * 4 + ["s2"] * 4 + ["s3"] * 2 + ["s4"] * 2 + [None, None]
    folds = group_folds(groups, 3, seed=0)
    assert len(folds) == 3 and sorted(i for f in folds for i in f) == list(range(len(groups)))
    for g in ("s1", "s2", "s3", "s4"):
        assert sum(any(groups[i] == g for i in f) for f in folds) == 1  # one group, one fold
    assert sorted(len(f) for f in folds) == [4, 5, 5]
    assert len(group_folds(["a", "a", "b"], 5, seed=0)) == 2  # at most one fold per group
    assert group_folds(groups, 3, seed=0) == folds  # seeded


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard")
    data = make_tiny_dataset(tmp / "data", {"train": 10, "val": 3, "test": 3})
    torch.set_num_threads(1)
    cfg = _config(tmp, tmp / "base", task="tiny", data=str(data), encoders=ENCODERS, epochs=15, mma_epochs=2)
    run(cfg)
    return tmp, tmp / "base" / "models" / "mma"


def _new_data(root: Path, seed: int) -> Path:
    """New annotations whose images follow another band code (the base's image branch is wrong on them) and whose
    sounds are as before (the base's audio branch is right); each item its own group, as annotations are."""
    import numpy as np

    root = make_tiny_dataset(root, {"train": 6, "val": 3, "test": 3}, seed=seed)
    rng = np.random.default_rng(seed)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    for row in rows:
        digit_image(SHIFT[row["label"]], rng).save(root / row["image"])
        row["group"] = row["id"]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_branch_that_would_get_worse_keeps_the_base_and_the_other_is_fine_tuned(base, tmp_path):
    tmp, parent_dir = base
    new = _new_data(tmp_path / "new", seed=3)
    # lr = 1 makes any fine-tuned scratch branch diverge: worse than the base's audio branch, which was right, and
    # no worse than its image branch, which was wrong on the new band code
    cfg = _config(tmp, tmp_path / "ft", init_from=str(parent_dir), data=str(new), epochs=3, lr=1.0, mma_epochs=2)
    metrics = run(cfg)
    guard = metrics["finetune"]["branch_guard"]
    assert guard["audio"]["kept"] == "base" and guard["audio"]["base"] > guard["audio"]["finetuned"], guard
    assert guard["image"]["kept"] == "finetuned" and guard["image"]["finetuned"] >= guard["image"]["base"], guard
    assert guard["audio"]["rows"] == 27 and guard["audio"]["folds"] == 5  # train + val annotations, 5 folds
    parent = from_pretrained(parent_dir, load_encoder_weights=False).persistent_state_dict()
    child = from_pretrained(tmp_path / "ft" / "checkpoint", load_encoder_weights=False).persistent_state_dict()
    kept = [k for k in parent if k.startswith(("encoders.audio.", "heads.audio."))]
    assert kept and all(torch.equal(parent[k], child[k]) for k in kept)  # bit for bit, batch-norm statistics too
    assert not torch.equal(parent["heads.image.weight"], child["heads.image.weight"])
    card = (tmp_path / "ft" / "checkpoint" / "README.md").read_text()
    assert "- **audio:** kept from the base (5-fold cross-validation over 27 annotations" in card
    assert not list((tmp_path / "ft" / "state").glob("cv-*"))  # the folds leave no state behind
    choice = metrics["finetune"]["cv_choice"]  # UME or MMA by the same folds, not by 9 validation items
    assert choice["rows"] == 27 and choice["folds"] == 5 and metrics["chosen"] == choice["chosen"]
    assert choice["chosen"] == "mma" or choice["ume"] > choice["mma"]  # the base is MMA: kept unless UME is better
    assert f"- **fusion:** `{choice['chosen']}` by the same cross-validation over 27 annotations" in card


def test_the_choices_never_read_the_test_split(base, tmp_path):
    """The folds are the new data's train and validation rows: relabelling every test row changes no verdict."""
    tmp, parent_dir = base
    runs = []
    for name in ("clean", "poisoned"):
        new = _new_data(tmp_path / name, seed=6)
        if name == "poisoned":
            rows = [json.loads(line) for line in (new / "metadata.jsonl").read_text().splitlines()]
            for row in rows:
                if row["split"] == "test":
                    row["label"] = SHIFT[row["label"]]
            (new / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = _config(tmp, tmp_path / f"ft-{name}", init_from=str(parent_dir), data=str(new), epochs=2, mma_epochs=1)
        runs.append(run(cfg))
    assert runs[0]["finetune"]["branch_guard"] == runs[1]["finetune"]["branch_guard"]
    assert runs[0]["finetune"]["cv_choice"] == runs[1]["finetune"]["cv_choice"]
    assert runs[0]["test"] != runs[1]["test"]  # the poison did reach the test split


def test_the_guard_can_be_turned_off_and_needs_enough_rows(base, tmp_path):
    tmp, parent_dir = base
    new = _new_data(tmp_path / "new", seed=4)
    off = _config(tmp, tmp_path / "off", init_from=str(parent_dir), data=str(new), epochs=1, mma_epochs=1)
    off.branch_guard = False
    assert "branch_guard" not in run(off)["finetune"]
    few = make_tiny_dataset(tmp_path / "few", {"train": 1, "val": 1, "test": 1}, seed=5)
    cfg = _config(tmp, tmp_path / "few-ft", init_from=str(parent_dir), data=str(few), epochs=1, mma_epochs=1)
    guard = run(cfg)["finetune"]["branch_guard"]
    assert guard["audio"] == {"kept": "finetuned", "rows": 6, "reason": "too few annotations to tell"}
    assert 6 < MIN_ROWS


def _relabelled_sounds(root: Path, seed: int) -> Path:
    """New annotations whose sounds follow another code (a tone of ``a`` labelled ``b``, ...): the base's audio
    branch is wrong on every one of them, and a branch fine-tuned on them unlearns the tones it knew; the images are
    as before. Each item its own group."""
    root = make_tiny_dataset(root, {"train": 6, "val": 3, "test": 3}, seed=seed)
    rng = np.random.default_rng(seed)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    for row in rows:
        row |= {"label": SHIFT[row["label"]], "group": row["id"]}  # the tone stays; the image follows the label
        digit_image(row["label"], rng).save(root / row["image"])
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_branch_that_would_regress_on_the_base_rows_keeps_the_base(base, tmp_path):
    """The annotations alone say the new audio branch is better (the base is wrong on all of them); the base's
    replay memory, scored on rows no fold trained on, says it lost the tones the base knew: the base's branch is
    kept. Without the memory, the same fine-tune takes the new branch."""
    tmp, parent_dir = base
    folder = tmp_path / "with-memory"
    shutil.copytree(parent_dir, folder)
    replaymemory.save(folder, *replaymemory.build(from_pretrained(folder), tmp / "data", rows=15, heldout_rows=0))
    new = _relabelled_sounds(tmp_path / "new", seed=7)
    keys = dict(init_from=str(folder), data=str(new), epochs=6, mma_epochs=1)
    without = run(_config(tmp, tmp_path / "without", replay_memory=False, **keys))["finetune"]["branch_guard"]
    assert without["audio"]["kept"] == "finetuned" and "base_rows" not in without["audio"], without
    metrics = run(_config(tmp, tmp_path / "with", **keys))
    audio = metrics["finetune"]["branch_guard"]["audio"]
    assert audio["finetuned"] >= audio["base"], audio  # on the annotations alone it would replace the base's
    b = audio["base_rows"]
    assert b["rows"] == 15 and b["finetuned"] < b["base"] - BASE_TOLERANCE, audio
    assert audio["kept"] == "base" and audio["worse_on"] == "base rows", audio
    parent = from_pretrained(folder, load_encoder_weights=False).persistent_state_dict()
    child = from_pretrained(tmp_path / "with" / "checkpoint", load_encoder_weights=False).persistent_state_dict()
    kept = [k for k in parent if k.startswith(("encoders.audio.", "heads.audio."))]
    assert kept and all(torch.equal(parent[k], child[k]) for k in kept)
    choice = metrics["finetune"]["cv_choice"]
    assert choice["base_rows"]["rows"] == 15
    other = {"ume": "mma", "mma": "ume"}[choice["chosen"]]
    assert choice["base_rows"][choice["chosen"]] >= choice["base_rows"][other] - BASE_TOLERANCE, choice
    card = (tmp_path / "with" / "checkpoint" / "README.md").read_text()
    assert "over 15 of the base's rows: base " in card and "worse on the base rows)" in card


def test_the_memory_held_out_rows_catch_a_regression_the_training_rows_cannot(base, tmp_path):
    """Three of the base's training rows cannot show a loss beyond chance; nine validation rows it never trained on
    (the memory's held-out rows, scored by copies that never train on them) can: the relabelled sounds make the
    fine-tuned audio branch lose tones the base knew, and the base's branch is kept. The same memory without its
    held-out rows lets the fine-tuned branch through."""
    tmp, parent_dir = base
    new = _relabelled_sounds(tmp_path / "new", seed=7)
    verdicts = {}
    for name, held in (("held", 9), ("none", 0)):
        folder = tmp_path / f"memory-{name}"
        shutil.copytree(parent_dir, folder)
        replaymemory.save(folder, *replaymemory.build(from_pretrained(folder), tmp / "data", rows=3, heldout_rows=held))
        keys = dict(init_from=str(folder), data=str(new), epochs=6, mma_epochs=1)
        verdicts[name] = run(_config(tmp, tmp_path / f"ft-{name}", **keys))["finetune"]
    audio = verdicts["held"]["branch_guard"]["audio"]
    h = audio["heldout_rows"]
    assert h["rows"] == 9 and h["finetuned"] < h["base"] - BASE_TOLERANCE, audio
    assert audio["kept"] == "base" and audio["worse_on"] == "held-out rows" and audio["alpha"] == 0.0, audio
    assert verdicts["held"]["replay_memory"] | {"source": None, "licence": None} == {
        "rows": 3, "heldout_rows": 9, "source": None, "licence": None}  # fmt: skip
    assert verdicts["held"]["cv_choice"]["heldout_rows"]["rows"] == 9
    other = verdicts["none"]["branch_guard"]["audio"]
    assert "heldout_rows" not in other and other["kept"] == "finetuned", other


def test_a_finetune_that_changes_nothing_saves_the_base_as_it_is(base, tmp_path):
    """New annotations from the base's own domain: the base is right on them, no fine-tuned branch is better beyond
    chance and neither is the refitted fusion, so the saved checkpoint is the base, bit for bit (its fusion, its
    calibration), not a refit on 27 items."""
    tmp, parent_dir = base
    new = make_tiny_dataset(tmp_path / "new", {"train": 6, "val": 3, "test": 3}, seed=8)
    metrics = run(_config(tmp, tmp_path / "ft", init_from=str(parent_dir), data=str(new), epochs=2, mma_epochs=1))
    guard, choice = metrics["finetune"]["branch_guard"], metrics["finetune"]["cv_choice"]
    assert {v["kept"] for v in guard.values()} == {"base"} and choice["refit"] is False, (guard, choice)
    assert metrics["saved"] == "base" and metrics["calibration"]["kept_base"] is True
    parent = from_pretrained(parent_dir, load_encoder_weights=False).persistent_state_dict()
    child = from_pretrained(tmp_path / "ft" / "checkpoint", load_encoder_weights=False).persistent_state_dict()
    assert parent.keys() == child.keys() and all(torch.equal(parent[k], child[k]) for k in parent)
    assert metrics["test"]["base"]["accuracy"] == metrics["finetune"]["before"]["accuracy"]
