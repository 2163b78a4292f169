"""The local runner with real processes: a tiny fine-tuning job end to end, the queue of a busy device, cancel
(SIGTERM: the trainer saves its state), restart-then-resume equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from tests.jobsutil import job_overrides, make_base, make_data, wait_for
from ume_mma.annotate import open_store
from ume_mma.jobs import JobStore, cancel_job, job_status, list_jobs, recover_jobs, resume_job, start_job
from ume_mma.jobs.local import DEFAULT_NICE, default_threads, group_alive
from ume_mma.jobs.store import FINISHED, JobError

CPU = {"device": "cpu"}
LONG = 30  # epochs of each uni-modal phase (90 steps): a cancel after epoch 1 lands far before the end


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # the training processes: tiny batches, a busy 2-core machine
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


class Done(NamedTuple):
    tmp: Path
    base: Path
    data: Path
    db: Path
    job_id: int


def _finished(jobs, job_id):
    return lambda: (s := job_status(jobs, job_id))["state"] in FINISHED and s


def _same_weights(status, expected) -> bool:
    """Every tensor of the two checkpoints is equal (the file bytes are not: safetensors orders its metadata freely)."""
    from safetensors.torch import load_file

    a, b = (load_file(Path(s["checkpoint"]) / "model.safetensors") for s in (status, expected))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Done:
    """One uninterrupted job, run to the end through the local runner."""
    tmp = tmp_path_factory.mktemp("jobs")
    base, data = make_base(tmp / "base"), make_data(tmp / "data")
    store = open_store(tmp / "a.db")
    # the runner's mechanics, every phase run: the branch guard (tests/test_branchguard.py) would keep this tiny
    # base and skip the MMA refit
    overrides = job_overrides(tmp, base, data, epochs=LONG, branch_guard=False)
    job_id = start_job(store, overrides, options=CPU)
    wait_for(_finished(store, job_id), "the job to finish")
    store.close()
    return Done(tmp, base, data, tmp / "a.db", job_id)


def test_a_tiny_job_runs_end_to_end_in_its_own_process(done):
    store = open_store(done.db)
    status = job_status(store, done.job_id)
    assert status["state"] == "succeeded", status["error"]
    assert status["exit_code"] == 0 and status["device"] == "cpu" and status["runner"] == "local"
    assert JobStore(store).get(done.job_id)["pid"] not in (None, os.getpid())  # never the caller's process
    progress = status["progress"]
    assert progress["phases"] == ["unimodal-audio", "unimodal-image", "mma"]
    bars = status["bars"]  # the Train tab's progress bars: every planned phase ran to its last step
    assert [b["phase"] for b in bars] == progress["phases"]
    assert all(b["state"] == "done" and b["done"] == b["total"] > 0 for b in bars)
    assert {p["series"] for p in status["curve"]} == {"loss", "val accuracy"}
    assert {line["event"] for line in status["recent"]} >= {"step", "epoch", "eval", "done"}
    assert progress["epoch"] == progress["epochs"] == 2 and 0 <= progress["val_accuracy"] <= 1
    assert status["metrics"]["chosen"] in ("ume", "mma")
    assert status["metrics"]["finetune"]["init_from"] == str(done.base)
    assert status["before"]["full"] == status["metrics"]["finetune"]["before"]["accuracy"]["full"]
    assert status["after"] == status["metrics"]["test"]["accuracy"]
    folder = Path(status["checkpoint"])
    assert folder == Path(status["out_dir"]) / "checkpoint" and (folder / "README.md").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "no temporary folder is left"
    (row,) = [r for r in list_jobs(store) if r["id"] == done.job_id]
    assert row["state"] == "succeeded" and row["test_full"] == status["after"]["full"]


def test_a_job_runs_nicer_and_on_fewer_threads_than_the_app(done):
    """The runner's defaults reach the training process: lower priority, every CPU but one (what the trainer
    itself reports in its start line, read from its progress file: not a timing)."""
    store = open_store(done.db)
    status = job_status(store, done.job_id)
    assert status["options"]["nice"] == DEFAULT_NICE and status["options"]["threads"] == default_threads()
    lines = (Path(status["out_dir"]).parent / "progress.jsonl").read_text().splitlines()
    (start,) = [event for event in map(json.loads, lines) if event["event"] == "start"]
    assert start["nice"] == os.nice(0) + DEFAULT_NICE, "the training process runs nicer than its caller"
    assert start["threads"] == default_threads()


def test_bad_runner_options_are_refused_before_anything_is_written(done, tmp_path):
    store = open_store(tmp_path / "c.db")
    for bad in ({"nice": 25}, {"nice": -1}, {"threads": 0}, {"threads": "2"}):
        with pytest.raises(JobError, match="runner option"):
            start_job(store, job_overrides(done.tmp, done.base, done.data), options={**CPU, **bad})
    assert list_jobs(store) == []


def test_a_second_job_on_a_busy_device_is_queued_then_runs(done, tmp_path):
    store = open_store(tmp_path / "b.db")
    jobs = JobStore(store)
    busy = jobs.add({"task": "held"}, "local", "cpu", {"device": "cpu"})
    assert jobs.move(busy, ["queued"], "running", pid=os.getpgrp())  # this (alive) process group holds the device
    job_id = start_job(store, job_overrides(done.tmp, done.base, done.data, epochs=1, mma_epochs=0), options=CPU)
    status = job_status(store, job_id)
    assert status["state"] == "queued" and status["queue_position"] == 1  # queued, not refused
    recover_jobs(store)
    assert job_status(store, job_id)["state"] == "queued"  # the device is still busy
    jobs.move(busy, ["running"], "succeeded")
    recover_jobs(store)  # what the app does at start, and status/list do: start queued jobs on free devices
    final = wait_for(_finished(store, job_id), "the queued job to run")
    assert final["state"] == "succeeded", final["error"]


def _wait_for_second_epoch(store, job_id) -> dict:
    """A training step past the first epoch (a resume then replays the earlier epochs' shuffling). The uni-modal
    phases run LONG epochs, so the job is far from its end when the cancel or kill arrives."""

    def past_first_epoch():
        s = job_status(store, job_id)
        p = s["progress"]
        return ((p.get("epoch") or 0) >= 2 or p["phase"] not in (None, "unimodal-audio")) and s

    return wait_for(past_first_epoch, "a step past the first epoch")


def test_cancel_saves_the_state_and_resume_equals_the_uninterrupted_run(done, tmp_path):
    store = open_store(tmp_path / "c.db")
    overrides = job_overrides(done.tmp, done.base, done.data, epochs=LONG, branch_guard=False)
    job_id = start_job(store, overrides, options=CPU)
    _wait_for_second_epoch(store, job_id)
    assert cancel_job(store, job_id)["cancel_requested_at"] is not None
    cancelled = wait_for(_finished(store, job_id), "the cancel")
    assert cancelled["state"] == "cancelled" and cancelled["exit_code"] == 143  # stopped cleanly, state saved
    assert cancelled["recent"][-1]["event"] == "stopped" and cancelled["checkpoint"] is None
    assert list((Path(cancelled["out_dir"]) / "state").iterdir()), "the trainer saved its state"
    resume_job(store, job_id)
    final = wait_for(_finished(store, job_id), "the resumed job")
    assert final["state"] == "succeeded", final["error"]
    expected = job_status(open_store(done.db), done.job_id)
    assert final["metrics"]["test"] == expected["metrics"]["test"]
    assert final["metrics"]["chosen"] == expected["metrics"]["chosen"] and final["metrics"]["resumed"]
    assert _same_weights(final, expected), "resumed training gives the same weights"


def test_a_job_whose_process_is_gone_is_interrupted_and_resumes_to_the_same_result(done, tmp_path):
    store = open_store(tmp_path / "d.db")
    overrides = job_overrides(done.tmp, done.base, done.data, epochs=LONG, branch_guard=False)
    job_id = start_job(store, overrides, options=CPU)
    _wait_for_second_epoch(store, job_id)
    pid = JobStore(store).get(job_id)["pid"]
    os.killpg(pid, signal.SIGKILL)  # the machine restarts: nothing gets to record anything
    wait_for(lambda: not group_alive(pid), "the killed processes to be gone")
    store.close()
    store = open_store(tmp_path / "d.db")  # "the app restarts"
    recover_jobs(store)
    interrupted = job_status(store, job_id)
    assert interrupted["state"] == "interrupted" and "resume" in interrupted["error"]
    resume_job(store, job_id)
    final = wait_for(_finished(store, job_id), "the resumed job")
    assert final["state"] == "succeeded", final["error"]
    expected = job_status(open_store(done.db), done.job_id)
    assert final["metrics"]["test"] == expected["metrics"]["test"]
    assert _same_weights(final, expected)


def test_cancel_of_a_queued_job_and_of_a_finished_job(done, tmp_path):
    store = open_store(done.db)
    with pytest.raises(ValueError, match=f"job {done.job_id} has already succeeded: there is nothing to cancel"):
        cancel_job(store, done.job_id)
    other = open_store(tmp_path / "e.db")
    jobs = JobStore(other)
    busy = jobs.add({"task": "held"}, "local", "cpu", {"device": "cpu"})
    jobs.move(busy, ["queued"], "running", pid=os.getpgrp())
    job_id = start_job(other, job_overrides(done.tmp, done.base, done.data), options=CPU)
    assert cancel_job(other, job_id)["state"] == "cancelled"  # never started: cancelled at once
    with pytest.raises(ValueError, match="is running: only an interrupted, cancelled or failed job can resume"):
        resume_job(other, busy)
