"""The annotation loop, measured (a script, not a test): label K items of a shifted pool, fine-tune, compare.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_annotation_loop.py --work ~/.cache/ume_mma/loop \\
        [--seeds 3] [--ks 25 50 100] [--sweep] [--save]

1. Data (built once under ``--work``): ``av-digits-shift --shift both`` (:mod:`ume_mma.data.shift`: OpenCV
   handwriting at a low scan resolution + asterisk speech over a noisy telephone line; ``train`` = the pool,
   ``val`` = the pool's validation, ``test`` = held-out speakers and sheet blocks) and the original
   av-digits (``clean``, the shipped checkpoint's data: replay rows and the original test set).
2. The pool is imported into an annotation store (SQLite in a temporary folder), predicted with the shipped
   checkpoint, and a simulated annotator takes items in queue order (``next_item``/``submit`` with the true
   label): one ``disagreement`` queue, and one ``random`` queue per seed. After K = 25, 50, 100 labels the
   queue's annotations are fine-tuned through the job runner (``start_job(..., annotations=queue)``) from the
   shipped checkpoint with replay of the original training data.
3. Every checkpoint is evaluated on the held-out part (fused and per branch), the pool's validation and the
   original av-digits test set (the 2,000 rows the shipped checkpoint's metrics.json used).
4. The wall clock of one job on 100 annotations (start_job to succeeded), and the app's /predict latency
   (``python app.py`` in its own process, gradio_client, distinct files so every call runs the encoders; and
   the same inputs through an in-process ``predictor.predict``) idle (before and after) and while a fine-tuning
   job runs, with the runner's defaults (lower priority, fewer threads) and without.

Fine-tuning settings: :data:`SETTINGS`, chosen with ``--sweep`` on the pool's validation (never on held-out).
Prints a table; ``--save`` writes bench/results/annotation_loop.json and docs/annotation-loop.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ume_mma.finetune import ANNOTATION_RECIPE  # noqa: E402

CHECKPOINT = "checkpoints/av-digits"
ORDERS = ("disagreement", "random", "mixed")  # the first two by default; mixed on request (--orders)
# Fine-tuning settings: the base of every candidate, and (merged with it) the candidate that --sweep chose on the
# pool's validation at K=50 (see the results file): the shipped checkpoint's own recipe for the heads and fusion.
BASE_SETTINGS: dict[str, Any] = {"replay": 0.1, "epochs": 8, "head_epochs": 8, "mma_epochs": 4, "batch_size": 32}
CHOSEN = {"head_epochs": 2, "head_lr": 3e-3, "mma_epochs": 10, "mma_lr": 1e-3, "dropout_p": 0.8}
# and the branch guard's WiSE-FT mix, which bench/bench_fewlabel.py chose (bench/results/fewlabel_sweep.json)
KEEP_SKILLS: dict[str, Any] = {"wise_ft": True}
SETTINGS: dict[str, Any] = {**BASE_SETTINGS, **CHOSEN, **KEEP_SKILLS}
assert SETTINGS == ANNOTATION_RECIPE, "the app's Train tab starts from what this bench chose: keep them equal"
SWEEP: list[dict[str, Any]] = [
    {"replay": 0.1},
    {"replay": 0.1, "mma_epochs": 10, "mma_lr": 1e-3},
    {"replay": 0.1, "mma_epochs": 20, "mma_lr": 1e-3},
    {"replay": 0.05, "mma_epochs": 20, "mma_lr": 1e-3, "dropout_p": 0.8},
    {"replay": 0.1, "head_epochs": 2, "head_lr": 3e-3, "mma_epochs": 10, "mma_lr": 1e-3, "dropout_p": 0.8},
    {"replay": 0.03, "mma_epochs": 20, "mma_lr": 1e-3, "dropout_p": 0.8},
    {"replay": 0.1, "epochs": 15, "mma_epochs": 20, "mma_lr": 1e-3},
]
KEEP = 0.01  # a candidate may lose at most this much of the shipped checkpoint's accuracy on the original val split
ANNOTATOR = "simulated"


# ---------------------------------------------------------------- data


def ensure_shift(work: Path, seed: int = 0, limit: int | None = None) -> Path:
    """The ``both`` shift under ``work`` (built when absent or built with other arguments)."""
    from ume_mma.data import shift

    out = work / (f"av-digits-shift-both-s{seed}" + (f"-l{limit}" if limit else ""))
    want = {"limit_per_split": limit, "scan_px": list(shift.SCAN_PX), "snr_db_range": list(shift.SNR_DB)}
    info = json.loads((out / "build_info.json").read_text()) if (out / "build_info.json").is_file() else {}
    if any(info.get(k) != v for k, v in want.items()):
        shift.build_shift(out, "both", seed=seed, limit=limit)
    return out


def ensure_base_data(work: Path, given: str | None, limit: int | None = None) -> Path:
    """The original av-digits folder: ``given``, else built (``clean``, seed 0) under ``work``. A ``limit``
    build keeps the first rows of each split (its test rows are not the full test set: for tests only)."""
    if given:
        return Path(given).expanduser().resolve()
    from ume_mma.data.av_digits import build_av_digits
    from ume_mma.data.format import SPLITS

    out = work / ("av-digits-clean" + (f"-l{limit}" if limit else ""))
    if not (out / "metadata.jsonl").is_file():
        build_av_digits(out, "clean", 0, None if limit is None else dict.fromkeys(SPLITS, limit), progress=False)
    return out


def part_view(data: Path, split: str, out: Path) -> Path:
    """A folder holding only ``split``'s rows of ``data`` (its media folders linked, not copied): what is
    imported into the annotation store."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("images", "audio"):
        link = out / sub
        if not link.exists():
            link.symlink_to(data / sub, target_is_directory=True)
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines() if line.strip()]
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("split") == split))
    return out


# ---------------------------------------------------------------- the loop


def annotate(queue: Any, n: int, annotator: str = ANNOTATOR) -> list[str]:
    """The simulated annotator: take ``n`` items in the queue's order and submit each one's true label (the
    dataset label it was imported with). Returns the labelled items' source ids, in order."""
    done = []
    for _ in range(n):
        item = queue.next_item(annotator)
        if item is None:
            break
        queue.submit(item.id, item.given_label, annotator)
        done.append(item.source_id)
    return done


def run_job(store: Any, queue: str, overrides: dict[str, Any], options: dict[str, Any] | None = None) -> dict:
    """Fine-tune on ``queue``'s annotations through the local runner; waits; returns the final status plus
    ``wall_s`` (start_job to a finished state)."""
    from ume_mma.jobs import job_status, start_job
    from ume_mma.jobs.store import FINISHED

    t0 = time.perf_counter()
    job_id = start_job(store, overrides, "local", annotations=queue, options={"device": "cpu", **(options or {})})
    while (status := job_status(store, job_id))["state"] not in FINISHED:
        time.sleep(0.5)
    status["wall_s"] = time.perf_counter() - t0
    if status["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {status['state']}: {status['error']}")
    return status


def overrides_for(settings: dict[str, Any], seed: int, base_data: Path | None, cache: Path) -> dict[str, Any]:
    """The job's overrides; without ``base_data`` (a new user's case) no replay: the checkpoint's replay memory."""
    out = {"init_from": str(ROOT / CHECKPOINT), "base_data": str(base_data), "seed": seed, "eval_repeats": 1,
           "cache_dir": str(cache), **settings}  # fmt: skip
    if base_data is None:
        del out["base_data"]
        out.pop("replay", None)
    return out


class Evaluator:
    """Evaluates checkpoints on fixed sample sets (encoder features cached on disk under ``cache``)."""

    def __init__(self, sets: dict[str, list[Any]], cache: Path) -> None:
        self.sets, self.cache = sets, cache

    def __call__(self, checkpoint: str | Path, names: tuple[str, ...] | None = None) -> dict[str, dict]:
        from ume_mma.checkpoint import from_pretrained
        from ume_mma.evaluate import evaluate_samples

        model = from_pretrained(checkpoint)
        out = {}
        for name in names or tuple(self.sets):
            r = evaluate_samples(model, self.sets[name], self.cache, repeats=1)
            out[name] = {"fused": r["accuracy"]["full"], **{m: acc for m, acc in r["branches"].items()}}
        return out


def loop(
    store: Any,
    pool: Path,
    evaluate: Evaluator,
    order: str,
    seed: int,
    ks: list[int],
    job: Any,
    names: tuple[str, ...] | None = None,
    tag: str = "",
) -> list[dict[str, Any]]:
    """One queue (``order``, ``seed``): label up to each K, fine-tune, evaluate. ``job(queue, seed)`` runs a job."""
    from ume_mma.annotate import AnnotationQueue, import_dataset

    name = f"{tag}{order}-s{seed}"
    import_dataset(store, pool, queue=name, order=order, seed=seed)
    predict(store, name)
    queue, labelled, rows = AnnotationQueue(store, name), [], []
    for k in sorted(ks):
        labelled += annotate(queue, k - len(labelled))
        status = job(name, seed)
        rows.append({"order": order, "seed": seed, "k": len(labelled), "job_wall_s": status["wall_s"],
                     "chosen": status["metrics"]["chosen"], "train_rows": status["metrics"]["train_rows"],
                     "accuracy": evaluate(status["checkpoint"], names), "first_items": labelled[:5]})  # fmt: skip
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "first_items"}), flush=True)
    return rows


_PREDICTOR: dict[str, Any] = {}


def predict(store: Any, queue: str) -> None:
    """The prediction pass with the shipped checkpoint (one predictor, its encoder cache kept across queues)."""
    from ume_mma.annotate import predict_queue
    from ume_mma.predictor import Predictor

    if "p" not in _PREDICTOR:
        _PREDICTOR["p"] = Predictor.from_pretrained(ROOT / CHECKPOINT, cache_size=None, cache_mb=512)
    predict_queue(store, _PREDICTOR["p"], queue, show_progress=False)


# ---------------------------------------------------------------- latency of the app while a job runs


class Requests:
    """Distinct /predict requests from ``rows`` (image + audio): every call gets files of new content (one
    pixel and the audio gain differ), so the app's encoder cache never answers and each call runs the encoders."""

    def __init__(self, rows: list[Any], folder: Path) -> None:
        self.rows, self.folder, self.n = rows, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def next(self) -> dict[str, str]:
        import numpy as np
        import soundfile as sf
        from PIL import Image

        row, k = self.rows[self.n % len(self.rows)], self.n
        self.n += 1
        img = np.asarray(Image.open(row.path("image"))).copy()
        img[0, 0] = k % 251 + 1
        wave, sr = sf.read(row.path("audio"), dtype="float32")
        paths = {"image": self.folder / f"i{k}.png", "audio": self.folder / f"a{k}.wav"}
        Image.fromarray(img).save(paths["image"])
        sf.write(paths["audio"], wave * (0.5 + 0.5 * ((k * 7919) % 1000) / 1000), sr)
        return {m: str(p) for m, p in paths.items()}


def timed_calls(client: Any, predictor: Any, requests: Requests, until: Any, gap_s: float = 0.25) -> dict:
    """While ``until()`` is false: one /predict call to the app, then the same (new) inputs through an
    in-process ``predictor.predict`` (the compute alone, no HTTP), ``gap_s`` apart. Latencies in seconds."""
    from gradio_client import handle_file

    out: dict[str, list[float]] = {"app": [], "predictor": []}
    while not until():
        paths = requests.next()
        t = time.perf_counter()
        client.predict(**{m: handle_file(p) for m, p in paths.items()}, api_name="/predict")
        t1 = time.perf_counter()
        predictor.predict(paths)
        out["app"].append(t1 - t)
        out["predictor"].append(time.perf_counter() - t1)
        time.sleep(gap_s)
    return out


def _counter(n: int) -> Any:
    left = iter(range(n))
    return lambda: next(left, None) is None


def _medians(lat: dict[str, list[float]]) -> dict[str, Any]:
    return {"calls": len(lat["app"])} | {f"{k}_median_ms": 1000 * statistics.median(v) for k, v in lat.items()}


def latency_while_training(
    store: Any, queue: str, overrides: dict[str, Any], rows: list[Any], tmp: Path, port: int, idle_calls: int
) -> dict[str, Any]:
    """Median latency of the app's /predict (``python app.py`` in its own process, gradio_client) and of an
    in-process ``predictor.predict``: idle (before and after the jobs, pooled), and while a job on ``queue``
    runs with the local runner's defaults (nice 10, threads = CPUs - 1 on a CPU) and with ``nice=0`` and every
    thread. Every call has new content: no cache answers."""
    from gradio_client import Client
    from serve import serve_app

    from ume_mma.jobs import job_status, start_job
    from ume_mma.jobs.store import FINISHED
    from ume_mma.predictor import Predictor

    proc = serve_app(port, "--checkpoint", CHECKPOINT)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        predictor = Predictor.from_pretrained(ROOT / CHECKPOINT)
        requests = Requests(rows, tmp / "requests")
        timed_calls(client, predictor, requests, _counter(10))  # warm-up
        idle = timed_calls(client, predictor, requests, _counter(idle_calls))
        out: dict[str, Any] = {}
        runs = {"job_defaults": {}, "job_nice0_all_threads": {"nice": 0, "threads": os.cpu_count()}}
        for name, options in runs.items():
            job_id = start_job(store, overrides, "local", annotations=queue, options={"device": "cpu", **options})
            done = lambda j=job_id: job_status(store, j)["state"] in FINISHED  # noqa: E731
            lat = timed_calls(client, predictor, requests, done)
            status = job_status(store, job_id)
            out[name] = _medians(lat) | {"job_state": status["state"], "job_options": status["options"]}
        after = timed_calls(client, predictor, requests, _counter(idle_calls))
        out["idle"] = _medians({k: idle[k] + after[k] for k in idle}) | {"calls_before_jobs": len(idle["app"])}
        for name in runs:
            for k in ("app", "predictor"):
                out[name][f"{k}_ratio_to_idle"] = out[name][f"{k}_median_ms"] / out["idle"][f"{k}_median_ms"]
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------- summary, plot, main


def mean_acc(rows: list[dict], order: str, k: int, split: str = "heldout", key: str = "fused") -> float | None:
    vals = [r["accuracy"][split][key] for r in rows if r["order"] == order and r["k"] == k and split in r["accuracy"]]
    return sum(vals) / len(vals) if vals else None


def targets(rows: list[dict], shipped: dict[str, dict], ks: list[int], timing: float | None, latency: dict | None):
    """The issue's four targets, computed from this run's numbers."""
    base_h, base_o = shipped["heldout"]["fused"], shipped["original_test"]["fused"]
    d50 = mean_acc(rows, "disagreement", 50)
    worst_orig = min(r["accuracy"]["original_test"]["fused"] for r in rows)
    r100 = mean_acc(rows, "random", 100)
    reach = [k for k in sorted(ks) if (m := mean_acc(rows, "disagreement", k)) is not None and r100 is not None
             and m >= r100]  # fmt: skip
    out = {
        "heldout_gain_k50_disagreement": None if d50 is None else d50 - base_h,
        "heldout_gain_target": 0.15,
        "original_test_worst_drop": base_o - worst_orig,
        "original_test_drop_target": 0.01,
        "random_k100_heldout": r100,
        "disagreement_k_reaching_random_k100": reach[0] if reach else None,
        "disagreement_k50_minus_random_k100": None if d50 is None or r100 is None else d50 - r100,
        "job_100_annotations_wall_s": timing,
        "job_wall_target_s": 120,
    }
    if latency:
        for name in ("job_defaults", "job_nice0_all_threads"):
            for k in ("app", "predictor"):
                out[f"{k}_predict_latency_ratio_{name}"] = latency[name][f"{k}_ratio_to_idle"]
        out["predict_latency_ratio_target"] = 1.25
    return out


def order_targets(rows: list[dict], ks: list[int], orders: list[str]) -> dict[str, Any]:
    """Issue 20's queue-order targets: held-out fused accuracy per order and K (mean over seeds), whether ``mixed``
    is at least ``random`` at every K, and the smallest K at which ``mixed`` reaches ``random``'s K = 100."""
    means = {o: {str(k): mean_acc(rows, o, k) for k in ks} for o in orders}
    out: dict[str, Any] = {"heldout_fused_mean": means}
    if "mixed" in orders and "random" in orders:
        mixed, rand = means["mixed"], means["random"]
        out["mixed_minus_random"] = {k: mixed[k] - rand[k] for k in mixed}
        out["mixed_ge_random_every_k"] = all(mixed[k] >= rand[k] for k in mixed)
        r100 = rand.get("100")
        reach = [k for k in sorted(ks) if r100 is not None and mixed[str(k)] >= r100]
        out["mixed_k_reaching_random_k100"] = reach[0] if reach else None
        out["reach_target_k"] = 60
    return out


def order_table(result: dict[str, Any]) -> str:
    """Markdown: held-out fused accuracy per queue order and K, mean over seeds (lowest and highest seed)."""
    rows, ks = result["runs"], result["ks"]
    orders = [o for o in ORDERS if any(r["order"] == o for r in rows)]
    lines = ["| order | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    lines.append(f"| shipped (K = 0) | {100 * result['shipped']['heldout']['fused']:.1f} |" + " |" * (len(ks) - 1))
    for order in orders:
        cells = []
        for k in ks:
            vals = [100 * r["accuracy"]["heldout"]["fused"] for r in rows if r["order"] == order and r["k"] == k]
            cells.append(f"{sum(vals) / len(vals):.1f} ({min(vals):.1f}–{max(vals):.1f})")
        lines.append(f"| {order} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], shipped: dict[str, dict], ks: list[int], path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, split, title in zip(axes, ("heldout", "original_test"), ("new domain, held-out part", "original test")):
        for order, colour in zip(ORDERS, ("tab:red", "tab:blue", "tab:green")):
            pts = [r for r in rows if r["order"] == order]
            ax.scatter([r["k"] for r in pts], [100 * r["accuracy"][split]["fused"] for r in pts], color=colour,
                       alpha=0.35, s=14)  # fmt: skip
            means = [(k, mean_acc(rows, order, k, split)) for k in ks]
            ax.plot([k for k, m in means if m is not None], [100 * m for _, m in means if m is not None], "o-",
                    color=colour, label=f"{order}-first" if order == "disagreement" else order)  # fmt: skip
        ax.axhline(100 * shipped[split]["fused"], color="k", ls="--", label="shipped checkpoint")
        ax.set(xlabel="labelled items K", ylabel="fused accuracy (%)", title=title, xticks=ks)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"av-digits under shift: fine-tuning on K labels (mean of {seeds} seed(s); dots: each seed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def sweep(
    store: Any, pool: Path, evaluate: Evaluator, make_job: Any, shipped_val: float
) -> tuple[dict[str, Any], list[dict]]:
    """Each candidate of :data:`SWEEP` at K=50 disagreement-first, seed 0, scored on the pool's validation
    and the original av-digits *val* split only (neither held-out part nor any test set is evaluated here).
    The best pool-val fused accuracy among candidates that keep the original val within :data:`KEEP` (all
    candidates if none does). Returns the chosen settings and every candidate's scores."""
    scores = []
    for i, candidate in enumerate(SWEEP):
        settings = {**BASE_SETTINGS, **candidate}
        names = ("pool_val", "original_val")
        (row,) = loop(store, pool, evaluate, "disagreement", 0, [50], make_job(settings), names, f"sweep{i}-")
        acc = row["accuracy"]
        keeps = acc["original_val"]["fused"] >= shipped_val - KEEP
        scores.append({"settings": settings, **acc, "keeps_original": keeps, "job_wall_s": row["job_wall_s"],
                       "chosen": row["chosen"]})  # fmt: skip
    ok = [s for s in scores if s["keeps_original"]] or scores
    return max(ok, key=lambda s: s["pool_val"]["fused"])["settings"], scores


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine()}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("~/.cache/ume_mma/loop"), help="data and feature cache")
    ap.add_argument("--base-data", default=None, help="the original av-digits folder (default: built in --work)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--ks", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--orders", nargs="+", default=list(ORDERS[:2]), choices=ORDERS)
    ap.add_argument("--sweep", action="store_true", help="choose the settings on the pool's validation first")
    ap.add_argument("--settings", type=json.loads, default=None, help="JSON settings instead of SETTINGS")
    ap.add_argument("--limit", type=int, default=None, help="rows per split of both datasets (tests)")
    ap.add_argument(
        "--base-setting",
        choices=["replay", "none"],
        default="replay",
        help="replay: 10%% of the original train split; none: no base data folder (the replay memory)",
    )
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--idle-calls", type=int, default=40)
    ap.add_argument("--port", type=int, default=7879)
    ap.add_argument("--save", action="store_true")
    ap.add_argument("--resume", action="store_true", help="keep the finished queues of a stopped run's --out")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "annotation_loop.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "annotation-loop.png")
    args = ap.parse_args(argv)
    from ume_mma.annotate import open_store
    from ume_mma.data.format import load_dataset

    t_start, load_before = time.time(), os.getloadavg()[0]
    work = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    shift, base = ensure_shift(work, 0, args.limit), ensure_base_data(work, args.base_data, args.limit)
    data, cache = load_dataset(shift), work / "features"
    sets = {"heldout": data.split("test").samples, "pool_val": data.split("val").samples,
            "original_test": load_dataset(base).split("test").samples,
            "original_val": load_dataset(base).split("val").samples}  # fmt: skip
    evaluate = Evaluator(sets, cache)
    shipped = evaluate(ROOT / CHECKPOINT)
    names = ("heldout", "pool_val", "original_test")
    print("shipped:", json.dumps(shipped), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    store = open_store(tmp / "annotations.db")
    pool = part_view(shift, "train", tmp / "pool")

    def make_job(settings: dict[str, Any]) -> Any:
        given = base if args.base_setting == "replay" else None
        return lambda queue, seed: run_job(store, queue, overrides_for(settings, seed, given, cache))

    settings, scores = dict(args.settings or SETTINGS), None
    if args.sweep:
        settings, scores = sweep(store, pool, evaluate, make_job, shipped["original_val"]["fused"])
        print("chosen on the pool's validation:", settings, flush=True)
    rows, resumed = [], None
    if args.resume and args.out.is_file():  # keep the queues (order, seed) a stopped run finished at every K
        prev = json.loads(args.out.read_text())
        done = {(r["order"], r["seed"]) for r in prev["runs"] if r["k"] == max(args.ks)}
        rows = [r for r in prev["runs"] if (r["order"], r["seed"]) in done]
        resumed = {"from": prev.get("command"), "queues_kept": sorted(done)}
    for seed in range(args.seeds):
        for order in args.orders:
            if any((r["order"], r["seed"]) == (order, seed) for r in rows):
                continue
            rows += loop(store, pool, evaluate, order, seed, args.ks, make_job(settings), names)
            if args.save:  # a partial file a stopped run resumes from
                args.out.write_text(json.dumps({"command": " ".join(sys.argv), "runs": rows}, indent=2) + "\n")
    timing = next((r["job_wall_s"] for r in rows if r["k"] == 100 and r["order"] == "disagreement"), None)
    latency = None
    if not args.no_latency:
        queue = f"{args.orders[0]}-s0"
        latency = latency_while_training(store, queue, overrides_for(settings, 0, base, cache), sets["heldout"][:50],
                                         tmp, args.port, args.idle_calls)  # fmt: skip
    result = {
        "checkpoint": CHECKPOINT,
        "data": {
            "shift": str(shift),
            "shift_build": json.loads((shift / "build_info.json").read_text()),
            "base_data": str(base),
            "sizes": {k: len(v) for k, v in sets.items()},
        },  # fmt: skip
        "settings": settings,
        "sweep_on_pool_val": scores,
        "seeds": args.seeds,
        "ks": args.ks,
        "shipped": shipped,
        "runs": rows,
        "latency": latency,
        "base_setting": args.base_setting,
        "targets": targets(rows, shipped, args.ks, timing, latency),
        "order_targets": order_targets(rows, args.ks, args.orders),
        "machine": machine() | {"load_avg_1min_before": load_before},
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_annotation_loop.py " + " ".join(sys.argv[1:]),
        "elapsed_s": round(time.time() - t_start, 1),
        "resumed": resumed,
    }
    print(table(result))
    print(order_table(result))
    if args.save:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        plot(rows, shipped, args.ks, args.plot, args.seeds)
    store.close()
    return result


def table(result: dict[str, Any]) -> str:
    """Markdown: held-out and original-test fused accuracy per order and K (mean over seeds)."""
    rows, shipped = result["runs"], result["shipped"]
    lines = ["| model | K | held-out fused | image | audio | original test fused |", "|---|---|---|---|---|---|"]
    h, o = shipped["heldout"], shipped["original_test"]
    lines.append(f"| shipped | 0 | {100 * h['fused']:.1f} | {100 * h['image']:.1f} | {100 * h['audio']:.1f} | "
                 f"{100 * o['fused']:.1f} |")  # fmt: skip
    for order in ORDERS:
        for k in result["ks"]:
            if mean_acc(rows, order, k) is None:
                continue
            cells = [mean_acc(rows, order, k, "heldout", m) for m in ("fused", "image", "audio")]
            cells.append(mean_acc(rows, order, k, "original_test"))
            lines.append(f"| {order} | {k} | " + " | ".join(f"{100 * c:.1f}" for c in cells) + " |")
    lines.append("")
    lines.append("targets: " + json.dumps(result["targets"], indent=1))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
