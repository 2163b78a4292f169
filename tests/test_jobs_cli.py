"""``python -m ume_mma.jobs``: start from annotations, status, cancel, list; every bad input gets one line and
exit status 2, and leaves no job and no folder behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobsutil import job_overrides, make_base, make_data
from tests.tiny import make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store
from ume_mma.jobs import JobStore
from ume_mma.jobs.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return tmp, make_base(tmp / "base"), make_data(tmp / "data")


def _items(tmp, base, data, **keys) -> list[str]:
    return [f"{k}={v}" for k, v in job_overrides(tmp, base, data, **keys).items()]


def _hold_cpu(db: Path) -> int:
    """A running job of this (alive) process group occupies the cpu device: new jobs queue behind it."""
    jobs = JobStore(open_store(db))
    busy = jobs.add({"task": "held"}, "local", "cpu", {"device": "cpu"})
    jobs.move(busy, ["queued"], "running", pid=os.getpgrp())
    return busy


def _one_line_error(capsys, *parts: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err
    return err


def _nothing_written(db: Path, jobs_before: int = 0) -> None:
    store = open_store(db)
    assert len(JobStore(store).list()) == jobs_before
    root = JobStore(store).root
    assert not root.exists() or not [p for p in root.iterdir() if p.name.startswith(".staging")]


def test_start_status_cancel_list(inputs, tmp_path, capsys):
    db = tmp_path / "a.db"
    busy = _hold_cpu(db)
    assert main(["start", *_items(*inputs), "--device", "cpu", "--db", str(db)]) == 0
    assert capsys.readouterr().out.startswith("job 2: queued on cpu (python -m ume_mma.jobs status 2)")
    assert main(["status", "2", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("job 2: queued (local on cpu)") and "position 1 on cpu" in out
    assert main(["status", "2", "--json", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["init_from"] == str(inputs[1])
    assert main(["list", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["2", "queued", "local"] and lines[1].split()[:2] == [str(busy), "running"]
    assert main(["cancel", "2", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "job 2: cancelled"
    assert main(["cancel", "2", "--db", str(db)]) == 2
    _one_line_error(capsys, "job 2 was already cancelled: there is nothing to cancel")
    assert main(["status", "99", "--db", str(db)]) == 2
    _one_line_error(capsys, "no job 99")


def test_start_from_the_annotations_of_the_store(inputs, tmp_path, capsys):
    tmp, base, _ = inputs
    db = tmp_path / "a.db"
    store = open_store(db)
    import_dataset(store, make_tiny_dataset(tmp_path / "src", {"train": 20}))
    queue = AnnotationQueue(store)
    while (item := queue.next_item("alice")) is not None:
        queue.submit(item.id, item.given_label, "alice")
    _hold_cpu(db)
    items = [f"init_from={base}", "epochs=1", f"cache_dir={tmp / 'cache'}"]
    assert main(["start", *items, "--annotations", "--device", "cpu", "--db", str(db)]) == 0
    job = JobStore(open_store(db)).get(2)
    data = Path(job["config"]["data"])
    assert data == JobStore(store).folder(2) / "data" and (data / "metadata.jsonl").is_file()
    assert len((data / "metadata.jsonl").read_text().splitlines()) == 60
    assert json.loads((JobStore(store).folder(2) / "config.json").read_text())["data"] == str(data)
    capsys.readouterr()


BAD = {
    "a config that does not validate": (["foo=1"], "unknown config key 'foo'"),
    "a wrong type": (["epochs=many"], "expected int, got 'many'"),
    "a base checkpoint that does not exist": (["init_from=/no/such/checkpoint"], "does not load"),
    "replay without base data": (["replay=0.3"], "needs base_data"),
    "a priority out of range": (["--nice", "30"], "runner option 'nice' must be an integer 0..19"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(inputs, tmp_path, capsys, case):
    extra, message = BAD[case]
    db = tmp_path / "a.db"
    assert main(["start", *_items(*inputs), *extra, "--device", "cpu", "--db", str(db)]) == 2
    _one_line_error(capsys, message)
    _nothing_written(db)


def test_a_base_whose_weights_do_not_load(inputs, tmp_path, capsys):
    tmp, base, data = inputs
    broken = Path(shutil.copytree(base, tmp_path / "broken"))
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert main(["start", *_items(tmp, broken, data), "--db", str(tmp_path / "a.db")]) == 2
    _one_line_error(capsys, "does not load", "unreadable safetensors")
    _nothing_written(tmp_path / "a.db")


def test_a_label_the_base_does_not_know(inputs, tmp_path, capsys):
    tmp, base, data = inputs
    other = Path(shutil.copytree(data, tmp_path / "d"))
    rows = [json.loads(line) for line in (other / "metadata.jsonl").read_text().splitlines()]
    (other / "metadata.jsonl").write_text("".join(json.dumps({**r, "label": r["label"].upper()}) + "\n" for r in rows))
    assert main(["start", *_items(tmp, base, other), "--db", str(tmp_path / "a.db")]) == 2
    _one_line_error(capsys, "['A', 'B', 'C']", "does not know")
    _nothing_written(tmp_path / "a.db")


def test_data_without_a_validation_split(inputs, tmp_path, capsys):
    tmp, base, _ = inputs
    data = make_tiny_dataset(tmp_path / "d", {"train": 2, "test": 1})
    assert main(["start", *_items(tmp, base, data), "--db", str(tmp_path / "a.db")]) == 2
    _one_line_error(capsys, "no 'val' samples")
    _nothing_written(tmp_path / "a.db")


def test_an_empty_annotation_set(inputs, tmp_path, capsys):
    tmp, base, _ = inputs
    db = tmp_path / "a.db"
    assert main(["start", f"init_from={base}", "--annotations", "--db", str(db)]) == 2
    _one_line_error(capsys, "nothing to export: no annotations")
    _nothing_written(db)


def test_the_real_command_line(inputs, tmp_path):
    """No traceback: one line on stderr, exit status 2."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "ume_mma.jobs", "cancel", "7", "--db", str(tmp_path / "a.db")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no job 7") and proc.stderr.count("\n") == 1
