"""Resumable training state and atomic folder writes.

A phase's state folder (``out/state/<phase>/``) holds the weights (safetensors), the optimizer and scheduler
(tensors-only torch file, read with ``weights_only=True``) and ``progress.json``: ``{"epoch": E, "step": S}``
= epochs ``0..E`` are complete and ``S`` steps of epoch ``E + 1`` are done (``S`` = 0 at an epoch boundary;
a stop request saves mid-epoch). Each process's augmentation generator is saved beside it
(``<phase>.rng-<rank>.pt``) so that a resumed epoch draws the same augmentations as an uninterrupted one.

Folders (the state, checkpoints) are written to a temporary sibling and renamed into place: a reader never
finds a half-written one where a complete one is expected.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ume_mma.checkpoint import save_pretrained
from ume_mma.models import MultiModalModel


def write_folder_atomically(folder: str | os.PathLike[str], fill: Callable[[Path], Any]) -> Path:
    """Call ``fill(tmp)`` on a new temporary sibling of ``folder``, then rename it to ``folder`` (replacing an
    existing one). On any error the temporary folder is removed and ``folder`` is left as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    old = None
    try:
        tmp.chmod(0o755)
        fill(tmp)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not folder.exists() and (old / folder.name).exists():
            os.replace(old / folder.name, folder)  # put the previous one back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def save_checkpoint(model: MultiModalModel, folder: str | os.PathLike[str], **kwargs: Any) -> Path:
    """:func:`~ume_mma.checkpoint.save_pretrained` into a temporary folder renamed to ``folder`` when complete."""
    return write_folder_atomically(folder, lambda tmp: save_pretrained(model, tmp, **kwargs))


def save_state(folder: Path, model: MultiModalModel, opt: Any, sched: Any, epoch: int, step: int = 0) -> None:
    """Resumable state: ``epoch`` = the last complete epoch (-1: none), ``step`` = steps done in the next one."""
    from safetensors.torch import save_file

    def fill(tmp: Path) -> None:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / "model.safetensors")
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
        (tmp / "progress.json").write_text(json.dumps({"epoch": epoch, "step": step}))

    write_folder_atomically(folder, fill)


def load_state(folder: Path, model: MultiModalModel, opt: Any, sched: Any) -> tuple[int, int]:
    """Restore what :func:`save_state` wrote (nothing is unpickled). Returns ``(epoch, step)``."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(folder / "model.safetensors"))
    state = torch.load(folder / "optimizer.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    progress = json.loads((folder / "progress.json").read_text())
    return int(progress["epoch"]), int(progress.get("step", 0))


def has_state(folder: Path) -> bool:
    return (folder / "progress.json").is_file()


def rng_path(folder: Path, rank: int) -> Path:
    return folder.with_name(f"{folder.name}.rng-{rank}.pt")


def save_rng(folder: Path, rank: int, generator: torch.Generator) -> None:
    """This process's augmentation generator, written atomically beside the state folder."""
    path = rng_path(folder, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"rng": generator.get_state()}, tmp)
    os.replace(tmp, path)


def load_rng(folder: Path, rank: int, generator: torch.Generator) -> None:
    generator.set_state(torch.load(rng_path(folder, rank), weights_only=True)["rng"])
