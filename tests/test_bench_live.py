"""The Live tab's numbers in docs/app.md and the README are bench/results/live.json's (bench/bench_live.py --save)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIVE = json.loads((ROOT / "bench" / "results" / "live.json").read_text())


def table() -> str:
    """The table of docs/app.md's "Live" section, built from live.json."""
    goal = LIVE["goals"]
    rows = [
        "| sessions | switches timed | latency median | latency p95 | updates/s per session | server CPU per update "
        "| sound received |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in LIVE["runs"]:
        rows.append(
            f"| {r['sessions']} | {r['switches'] - r['switches_missed']} of {r['switches']} | "
            f"{r['latency_median_ms']:.0f} ms | {r['latency_p95_ms']:.0f} ms | "
            f"{r['updates_per_s_per_session']:.1f} | {r['server_cpu_ms_per_update']:.0f} ms | "
            f"{100 * r['audio_received_share']:.0f}% |"
        )
    enc = LIVE["encoder_ms"]
    load = LIVE["load_average_1min"]
    rows.append("")
    rows.append(
        f"The encoders' own time for one update that changed both inputs: {LIVE['encoders_ms_per_update']:.0f} ms "
        f"(image {enc['image']:.0f} ms, audio {enc['audio']:.0f} ms). Goals: p95 <= {goal['latency_p95_ms']} ms "
        f"and >= {goal['updates_per_s_one_session']} updates/s for one session. Measured at a load average of "
        f"{load[0]:.0f}–{load[1]:.0f} on {LIVE['cpus']} cores (other work shared the machine): re-run it on a "
        "quiet one."
    )
    return "\n".join(rows)


def readme_line() -> str:
    one = next(r for r in LIVE["runs"] if r["sessions"] == 1)
    return (
        f"The **Live** tab streams a camera and a microphone: the cards follow a new digit in "
        f"{one['latency_median_ms']:.0f} ms (median, p95 {one['latency_p95_ms']:.0f} ms) at "
        f"{one['updates_per_s_per_session']:.1f} updates/s on this 2-core machine at load "
        f"{LIVE['load_average_1min'][0]:.0f} "
        f"(goal {LIVE['goals']['latency_p95_ms']} ms p95), and a covered lens or a muted microphone makes "
        "its branch *missing* ([docs/app.md](docs/app.md#live-a-camera-and-a-microphone))."
    )


def test_the_live_section_quotes_live_json():
    assert table() in (ROOT / "docs" / "app.md").read_text()


def test_the_readme_line_quotes_live_json():
    assert readme_line() in (ROOT / "README.md").read_text()


def test_live_json_is_a_run_of_both_session_counts():
    assert [r["sessions"] for r in LIVE["runs"]] == [1, 4]
    for r in LIVE["runs"]:
        assert 0 < r["latency_median_ms"] <= r["latency_p95_ms"]
        assert r["switches"] > r["switches_missed"] >= 0
        assert 0 < r["audio_received_share"] <= 1.05
