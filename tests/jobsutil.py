"""Helpers of the jobs tests: a tiny dataset, an untrained (but complete) base checkpoint, waiting for a state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.tiny import LABELS, make_tiny_dataset
from ume_mma.checkpoint import save_pretrained
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec

ENCODERS = {"audio": "scratch.logmel-cnn", "image": "scratch.image-cnn"}
WAIT_S = 600  # a generous bound for a tiny job on a busy machine: a deadline, not a timing assertion


def make_base(folder: Path, fill: str = "token") -> Path:
    """A complete MMA checkpoint on the tiny labels (random weights: built, not trained)."""
    import torch

    torch.manual_seed(0)
    config = ModelConfig(task="tiny", labels=list(LABELS), fusion="mma", fill=fill,
                         encoders={m: get_spec(n).to_dict() for m, n in ENCODERS.items()})  # fmt: skip
    model = MultiModalModel(config)
    for token in model.missing_tokens.values():
        token.data.normal_()
    return save_pretrained(model, folder)


def make_data(folder: Path, seed: int = 0) -> Path:
    return make_tiny_dataset(folder, {"train": 4, "val": 2, "test": 2}, seed=seed)


def job_overrides(tmp: Path, base: Path, data: Path, **keys: Any) -> dict[str, Any]:
    over = dict(init_from=str(base), data=str(data), epochs=2, mma_epochs=2, batch_size=4, eval_repeats=1)
    return over | {"cache_dir": str(tmp / "cache")} | keys


def wait_for(check, what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``check()`` until it returns something truthy (the condition, not the time, is what is tested)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def finished(client: Any, job_id: int):
    """A check for :func:`wait_for`: job ``job_id``'s ``/job_status`` through ``client`` (a gradio_client) once the
    job has finished, else None."""
    from ume_mma.jobs.store import FINISHED

    def check():
        status = client.predict(job_id, api_name="/job_status")
        return status if status["state"] in FINISHED else None

    return check
