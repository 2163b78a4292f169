"""Progress lines -> per-phase progress (the Train tab's bars) and the summary the jobs API returns."""

from __future__ import annotations

import json

from ume_mma.progress import phase_progress, progress_curve, summarize_progress


def lines(*events: dict) -> list[str]:
    return [json.dumps(e) for e in events]


START = {"event": "start", "phases": ["unimodal-audio", "unimodal-image", "mma"], "resume": False}


def test_planned_phases_wait_until_they_begin():
    rows = phase_progress(lines(START))
    assert [(r["phase"], r["state"], r["done"]) for r in rows] == [
        ("unimodal-audio", "waiting", 0),
        ("unimodal-image", "waiting", 0),
        ("mma", "waiting", 0),
    ]


def test_steps_fill_the_running_phase_and_a_new_phase_ends_the_earlier_ones():
    log = lines(
        START,
        {"event": "phase", "phase": "unimodal-audio", "epochs": 2, "steps": 5, "start_epoch": 0},
        {"event": "step", "phase": "unimodal-audio", "epoch": 1, "step": 5, "steps": 5, "loss": 1.0},
        {"event": "epoch", "phase": "unimodal-audio", "epoch": 1, "epochs": 2, "val_accuracy": 0.5},
        {"event": "step", "phase": "unimodal-audio", "epoch": 2, "step": 3, "steps": 5, "loss": 0.5},
        "not json: a log line",
        '{"event": "step", "phase": "unimodal-au',  # half-written last line of a live file
    )
    audio, image, mma = phase_progress(log)
    assert (audio["done"], audio["total"], audio["state"]) == (8, 10, "running")
    assert image["state"] == mma["state"] == "waiting"
    log += lines({"event": "phase", "phase": "mma", "epochs": 1, "steps": 4, "start_epoch": 0})
    audio, image, mma = phase_progress(log)  # image was loaded from an earlier run (no phase event): done too
    assert audio["state"] == image["state"] == "done" and audio["done"] == 10
    assert (mma["done"], mma["total"], mma["state"]) == (0, 4, "running")
    assert all(r["state"] == "done" for r in phase_progress(log + lines({"event": "done", "chosen": "mma"})))


def test_a_resumed_phase_starts_at_its_saved_epoch():
    log = lines(START, {"event": "phase", "phase": "unimodal-audio", "epochs": 4, "steps": 5, "start_epoch": 2})
    assert phase_progress(log)[0]["done"] == 10


def test_summary_keeps_the_base_evaluations():
    log = lines(
        {"event": "eval", "name": "before", "accuracy": {"full": 0.5}},
        {"event": "eval", "name": "base_before", "accuracy": {"full": 0.9}},
    )
    assert summarize_progress(log)["evals"] == {"before": {"full": 0.5}, "base_before": {"full": 0.9}}


def test_the_curve_runs_over_the_whole_job_and_is_thinned():
    log = lines(
        START,
        {"event": "phase", "phase": "unimodal-audio", "epochs": 2, "steps": 3, "start_epoch": 0},
        *(
            {"event": "step", "phase": "unimodal-audio", "epoch": e, "step": s, "steps": 3, "loss": 1 / (e * s)}
            for e in (1, 2)
            for s in (1, 2, 3)
        ),  # fmt: skip
        {"event": "epoch", "phase": "unimodal-audio", "epoch": 2, "epochs": 2, "val_accuracy": 0.75},
        {"event": "phase", "phase": "mma", "epochs": 1, "steps": 2, "start_epoch": 0},
        {"event": "step", "phase": "mma", "epoch": 1, "step": 2, "steps": 2, "loss": 0.1},
    )
    points = progress_curve(log)
    loss = [(p["x"], p["value"]) for p in points if p["series"] == "loss"]
    assert [x for x, _ in loss] == [1, 2, 3, 4, 5, 6, 8] and loss[-1] == (8, 0.1)  # mma continues after 6 steps
    (acc,) = [p for p in points if p["series"] == "val accuracy"]
    assert (acc["x"], acc["value"], acc["phase"]) == (6, 0.75, "unimodal-audio")
    thin = progress_curve(log, max_points=3)
    assert [p["x"] for p in thin if p["series"] == "loss"] == [1, 3, 8]  # evenly spaced, the last one kept


def test_a_job_records_the_test_evaluation_of_the_model_it_saved(tmp_path):
    from ume_mma.jobs.supervisor import summarize_metrics

    test = {"mma": {"accuracy": {"full": 0.8}}, "reliability": {"accuracy": {"full": 0.9}}}
    (tmp_path / "metrics.json").write_text(json.dumps({"chosen": "mma", "saved": "reliability", "test": test}))
    summary = summarize_metrics(tmp_path)
    assert summary["test"] == test["reliability"] and summary["chosen"] == "mma" and summary["saved"] == "reliability"
    (tmp_path / "metrics.json").write_text(json.dumps({"chosen": "mma", "test": test}))  # a run without calibration
    assert summarize_metrics(tmp_path)["test"] == test["mma"]
