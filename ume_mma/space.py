"""``Space.yaml``: the deployment config of the Hugging Face Space, and the README front matter made from it.

``Space.yaml`` has two sections:

- ``space``: what the Hub reads from the README's YAML front matter (title, sdk, sdk_version, app_file,
  hf_oauth, license, tags...); copied to the front matter as is;
- ``deploy``: what ``python -m ume_mma.hub deploy-space`` sets up: ``hardware`` (a Space hardware name:
  ``cpu-basic`` by default, a GPU flavor, or ``zero-a10g`` for ZeroGPU), ``storage`` (persistent storage:
  a Hub storage bucket ``org/name``, created if needed and mounted read-write at ``/data``, where the
  annotation database and the jobs live; or null), ``checkpoints`` (the checkpoints the Space
  serves: local folders under ``checkpoints/``, uploaded with the app, and Hub ids pinned to a revision,
  ``org/name@revision``, preloaded at build time), ``env`` (public variables) and ``secrets`` (the names of
  the secrets the Space expects; their values are never read).

The front matter adds ``suggested_hardware`` (= ``deploy.hardware``), ``models`` and ``preload_from_hub``
(the Hub checkpoints). ``python -m ume_mma.space front-matter --write`` rewrites README.md's front matter;
``--check`` exits 1 with a one-line summary when the two disagree (CI runs it; a test does too).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ume_mma.errors import UmeMmaError

ROOT = Path(__file__).resolve().parents[1]
SPACE_KEYS = {
    "title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file", "hf_oauth",
    "hf_oauth_scopes", "hf_oauth_expiration_minutes", "pinned", "license", "short_description", "tags", "fullWidth",
    "header", "startup_duration_timeout", "datasets",
}  # fmt: skip
DEPLOY_KEYS = {"hardware", "storage", "checkpoints", "env", "secrets", "admins", "reviewers"}
CHECKPOINT_FILES = ("config.json", "model.safetensors", "README.md", "metrics.json")
DATA_MOUNT = "/data"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
REPO_AT_REVISION = re.compile(r"^[\w.-]+/[\w.-]+@[\w./-]+$")


class SpaceConfigError(UmeMmaError, ValueError):
    """Space.yaml is not valid: an unknown key, an unknown hardware, a checkpoint that is not there..."""


def hardware_names() -> list[str]:
    """The Space hardware names ``huggingface_hub`` knows (it is kept in sync with the Hub)."""
    from huggingface_hub import SpaceHardware

    return [str(h.value) for h in SpaceHardware]


@dataclass
class SpaceConfig:
    space: dict[str, Any]
    hardware: str = "cpu-basic"
    storage: str | None = None
    checkpoints: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)  # Hub user names: admins of the Space's annotation and jobs
    reviewers: list[str] = field(default_factory=list)  # Hub user names: reviewers (resolve disagreements)

    @property
    def local_checkpoints(self) -> list[str]:
        return [c for c in self.checkpoints if "@" not in c]

    @property
    def hub_checkpoints(self) -> list[str]:
        """``org/name@revision`` entries."""
        return [c for c in self.checkpoints if "@" in c]

    @property
    def zero_gpu(self) -> bool:
        return self.hardware.startswith("zero-")

    def allowed(self) -> list[str]:
        """What a public Space may load: the served checkpoints (local folders and pinned Hub ids)."""
        return list(self.checkpoints)

    def front_matter(self) -> dict[str, Any]:
        """README.md's YAML front matter: the ``space`` section plus hardware, models and preloads."""
        front = dict(self.space)
        front["suggested_hardware"] = self.hardware
        if self.hub_checkpoints:
            front["models"] = [c.split("@")[0] for c in self.hub_checkpoints]
            front["preload_from_hub"] = [
                f"{c.split('@')[0]} {','.join(CHECKPOINT_FILES)} {c.split('@', 1)[1]}" for c in self.hub_checkpoints
            ]
        return front


def load_space_config(path: str | Path = ROOT / "Space.yaml", root: Path | None = None) -> SpaceConfig:
    """Read and check ``Space.yaml`` (local checkpoints are looked up under ``root``, default: its folder)."""
    path = Path(path)
    root = root or path.resolve().parent
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpaceConfigError(f"{path}: cannot read it as YAML ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"space", "deploy"} or "space" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise SpaceConfigError(f"{path}: needs the sections 'space' and 'deploy' and nothing else, got {keys}")
    space, deploy = data["space"] or {}, data.get("deploy") or {}
    for section, known, values in (("space", SPACE_KEYS, space), ("deploy", DEPLOY_KEYS, deploy)):
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpaceConfigError(f"{path}: unknown {section} keys {unknown}; known: {sorted(known)}")
    cfg = SpaceConfig(space=space, **deploy)
    _check(cfg, path, root)
    return cfg


def _check(cfg: SpaceConfig, path: Path, root: Path) -> None:
    for key in ("admins", "reviewers"):
        names = getattr(cfg, key)
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise SpaceConfigError(f"{path}: {key} is a list of Hugging Face user names, got {names!r}")
    names = hardware_names()
    if cfg.hardware not in names:
        raise SpaceConfigError(f"{path}: hardware {cfg.hardware!r} is not a Space hardware the Hub knows: {names}")
    if cfg.storage is not None and not (isinstance(cfg.storage, str) and REPO_ID.match(cfg.storage)):
        raise SpaceConfigError(f"{path}: storage is a Hub storage bucket id (org/name) or null, got {cfg.storage!r}")
    for ref in cfg.checkpoints:
        if "@" in ref:
            if not REPO_AT_REVISION.match(ref):
                raise SpaceConfigError(f"{path}: checkpoint {ref!r} is not org/name@revision")
        elif ".." in Path(ref).parts or Path(ref).is_absolute() or not (root / ref / "config.json").is_file():
            raise SpaceConfigError(
                f"{path}: checkpoint {ref!r} is neither a checkpoint folder inside the repository nor a Hub id "
                "pinned to a revision (org/name@revision)"
            )
    if not isinstance(cfg.env, dict) or not all(isinstance(v, str) and NAME.match(k) for k, v in cfg.env.items()):
        raise SpaceConfigError(f"{path}: env is a mapping NAME: 'string value'")
    bad = [s for s in cfg.secrets if not isinstance(s, str) or not NAME.match(s)]
    if bad:
        raise SpaceConfigError(f"{path}: secrets are names only (e.g. HF_TOKEN), got {bad}")
    if cfg.space.get("sdk") != "gradio" or not cfg.space.get("app_file"):
        raise SpaceConfigError(f"{path}: space.sdk must be gradio and space.app_file set")


def readme_with_front_matter(readme: str, front: dict[str, Any]) -> str:
    """``readme`` with its YAML front matter replaced by ``front``."""
    body = readme.split("---\n", 2)[2] if readme.startswith("---\n") else readme
    text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{text}---\n{body}"


def front_matter_diff(readme: str, front: dict[str, Any]) -> str | None:
    """None when ``readme``'s YAML front matter equals ``front`` (as data, not as text); else one line
    naming the keys that differ, are missing or are extra."""
    try:
        have = yaml.safe_load(readme.split("---\n", 2)[1]) if readme.startswith("---\n") else None
    except (IndexError, yaml.YAMLError) as exc:
        return f"README.md's front matter is not YAML ({str(exc).splitlines()[0]})"
    if not isinstance(have, dict):
        return "README.md has no front matter"
    if have == front:
        return None
    parts = []
    changed = [k for k in front if k in have and have[k] != front[k]]
    for key in changed[:3]:
        parts.append(f"{key}: README {have[key]!r}, Space.yaml {front[key]!r}")
    if len(changed) > 3:
        parts.append(f"{len(changed) - 3} more keys differ")
    missing = [k for k in front if k not in have]
    extra = [k for k in have if k not in front]
    if missing:
        parts.append(f"missing from README: {', '.join(missing)}")
    if extra:
        parts.append(f"not in Space.yaml: {', '.join(extra)}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ume_mma.space", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    fm = sub.add_parser("front-matter", help="print (or --write into README.md) the front matter of Space.yaml")
    fm.add_argument("--config", default=str(ROOT / "Space.yaml"))
    fm.add_argument("--readme", default=str(ROOT / "README.md"))
    mode = fm.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite README.md's front matter")
    mode.add_argument("--check", action="store_true", help="exit 1 (with a one-line summary) if README.md differs")
    args = ap.parse_args(argv)
    try:
        cfg = load_space_config(args.config)
    except SpaceConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    readme = Path(args.readme)
    current = readme.read_text(encoding="utf-8")
    if args.check:
        diff = front_matter_diff(current, cfg.front_matter())
        if diff is None:
            print(f"{readme.name}: front matter matches {Path(args.config).name}")
            return 0
        print(f"{readme.name}: front matter differs from {Path(args.config).name}: {diff} "
              "(fix: python -m ume_mma.space front-matter --write)", file=sys.stderr)  # fmt: skip
        return 1
    text = readme_with_front_matter(current, cfg.front_matter())
    if args.write:
        readme.write_text(text, encoding="utf-8")
        print(f"wrote the front matter of {readme}")
    else:
        print(text.split("---\n", 2)[1], end="")
    return 0


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
