"""Publishing: a checkpoint as a Hub model repo, the app as a Hugging Face Space (``python -m ume_mma.hub``).

    python -m ume_mma.hub push-checkpoint DIR ORG/NAME [--private] [--dry-run]
    python -m ume_mma.hub deploy-space ORG/NAME [--config Space.yaml] [--private] [--dry-run]

Tokens come only from ``HF_TOKEN``; ``--dry-run`` prints what would be sent and needs no token. Every check
(the folder loads strictly, Space.yaml is valid, the repo id is well formed) runs before any Hub call, so a
refusal uploads nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ume_mma.errors import CheckpointError, InputError, UmeMmaError
from ume_mma.replaymemory import FILE as REPLAY_FILE
from ume_mma.space import CHECKPOINT_FILES, DATA_MOUNT, REPO_ID, ROOT, SpaceConfig, load_space_config

LIBRARY = "ume_mma"
PIPELINE_TAGS = {  # the Hub has no multi-modal classification task: the first present modality's task
    "video": "video-classification",
    "audio": "audio-classification",
    "image": "image-classification",
    "text": "text-classification",
}
SPACE_SOURCES = ["app.py", "requirements.txt", "Space.yaml", "LICENSE", "packages.txt"]
SPACE_TREES = [("ui", "*.py"), ("ume_mma", "**/*.py"), ("assets", "**/*"), ("docs", "**/*.md"), ("docs", "*.png")]
SPACE_MOVED = [("results", "*.png", "docs/results")]  # the results plots, where the docs pages (and site) link them
SPACE_README = "SPACE_README.md"  # the Space's own short README body (the repository's README is for a clone)


def check_repo_id(repo_id: str) -> str:
    """``org/name`` (letters, digits, ``-``, ``_``, ``.``); anything else is refused before any Hub call."""
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id or len(repo_id) > 96 * 2:
        raise InputError(f"{str(repo_id)[:100]!r} is not a Hub repo id (org/name)")
    return repo_id


@dataclass
class Upload:
    """One file of a commit: its path in the repo and its local file or generated content."""

    path_in_repo: str
    local: Path | None = None
    content: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else self.local.stat().st_size

    def operation(self) -> Any:
        from huggingface_hub import CommitOperationAdd

        source = self.content if self.content is not None else str(self.local)
        return CommitOperationAdd(path_in_repo=self.path_in_repo, path_or_fileobj=source)


OPTIONAL_FILES = (REPLAY_FILE,)  # pushed and deployed where a checkpoint folder has them


# ------------------------------------------------------------------------------------------------ checkpoints
def card_metadata(config: Any, metrics: dict[str, Any] | None, license: str = "mit") -> Any:
    """The model card's Hub metadata: library, tags, pipeline tag and the evaluation as ``model-index``."""
    from huggingface_hub import EvalResult, ModelCardData

    from ume_mma.report import accuracy_columns, column_title

    mods = config.modalities
    tag = next(PIPELINE_TAGS[m] for m in PIPELINE_TAGS if m in mods)
    accuracy = (metrics or {}).get("accuracy") or {}
    branches = (metrics or {}).get("branches") or {}
    named = [(column_title(k), accuracy[k]) for k in accuracy_columns(accuracy)]
    named += [(f"{m} branch alone", value) for m, value in branches.items()]
    results = [
        EvalResult(
            task_type=tag, dataset_type=config.task, dataset_name=config.task, dataset_split="test",
            metric_type="accuracy", metric_name=f"accuracy ({name})", metric_value=round(100 * float(value), 2),
        )
        for name, value in named
    ]  # fmt: skip
    return ModelCardData(
        library_name=LIBRARY,
        license=license,
        pipeline_tag=tag,
        tags=["multimodal", "missing-modality", config.fusion, *mods],
        model_name=f"ume-mma-{config.task}",
        eval_results=results or None,
    )  # a huggingface_hub ModelCardData: to_yaml() gives the front matter with ``model-index``


def checkpoint_uploads(folder: str | Path) -> tuple[list[Upload], dict[str, Any]]:
    """The files of a checkpoint push (the card with its Hub metadata in front) and that metadata. The folder
    must load strictly (config and weights); else :class:`CheckpointError` and nothing is sent."""
    from huggingface_hub import ModelCard

    from ume_mma.checkpoint import from_pretrained, load_metrics, render_model_card

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a checkpoint folder (no config.json)")
    model = from_pretrained(folder, load_encoder_weights=False)  # strict: every tensor present, right shape
    metrics = load_metrics(folder)
    data = card_metadata(model.config, metrics)
    text = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else ""
    body = text.split("---\n", 2)[2] if text.startswith("---\n") else text or render_model_card(model.config, metrics)
    rendered = ModelCard(f"---\n{data.to_yaml()}\n---\n{body.lstrip()}")
    meta = rendered.data.to_dict()  # what the Hub will read back
    uploads = [Upload(name, folder / name) for name in (*CHECKPOINT_FILES, *OPTIONAL_FILES) if name != "README.md"]
    uploads = [u for u in uploads if u.local.is_file()]
    uploads.append(Upload("README.md", content=str(rendered).encode("utf-8")))
    return sorted(uploads, key=lambda u: u.path_in_repo), meta


def push_checkpoint(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Push a checkpoint folder as the model repo ``repo_id``; returns the plan (and the commit when sent)."""
    check_repo_id(repo_id)
    uploads, meta = checkpoint_uploads(folder)
    plan = {"repo_id": repo_id, "repo_type": "model", "private": private, "files": _listing(uploads), "card": meta}
    if dry_run:
        return plan
    from ume_mma import hub

    api = hub._api()
    with hub._hub_errors(f"pushing {folder} to the Hub model {repo_id!r}"):
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(
            repo_id,
            [u.operation() for u in uploads],
            repo_type="model",
            commit_message=f"ume_mma: push {Path(folder).name}",
        )
    return plan | {"commit": str(getattr(info, "oid", "") or "")}


# ------------------------------------------------------------------------------------------------ the Space
def space_uploads(cfg: SpaceConfig, root: Path = ROOT) -> list[Upload]:
    """Exactly what the Space needs: the app, the package, the assets, the requirements, the served local
    checkpoints, the docs pages and their images, and a README made of the front matter of Space.yaml and
    the short body of ``SPACE_README.md``. Never venvs, caches, tests, data, databases or tokens: the list is
    built from what is named here, not from what lies in the folder."""
    from ume_mma.space import readme_with_front_matter

    if not (root / SPACE_README).is_file():
        raise InputError(f"{root / SPACE_README} is missing: it is the body of the Space's README")
    uploads = [Upload(name, root / name) for name in SPACE_SOURCES if (root / name).is_file()]
    for top, pattern in SPACE_TREES:
        for path in sorted((root / top).glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
                uploads.append(Upload(path.relative_to(root).as_posix(), path))
    for top, pattern, dest in SPACE_MOVED:
        uploads += [Upload(f"{dest}/{p.name}", p) for p in sorted((root / top).glob(pattern)) if p.is_file()]
    for ref in cfg.local_checkpoints:
        names = (*CHECKPOINT_FILES, *OPTIONAL_FILES)  # a replay memory where the checkpoint carries one
        uploads += [Upload(f"{ref}/{n}", root / ref / n) for n in names if (root / ref / n).is_file()]
    readme = readme_with_front_matter((root / SPACE_README).read_text(encoding="utf-8"), cfg.front_matter())
    uploads.append(Upload("README.md", content=readme.encode("utf-8")))
    return sorted(uploads, key=lambda u: u.path_in_repo)


def deploy_space(
    repo_id: str, config: str | Path = ROOT / "Space.yaml", private: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Create or update the Space ``repo_id`` from Space.yaml: upload the files, set the hardware, the
    variables and the storage; name the secrets it expects (their values are never read)."""
    check_repo_id(repo_id)
    root = Path(config).resolve().parent
    cfg = load_space_config(config, root)
    uploads = space_uploads(cfg, root)
    plan = {
        "repo_id": repo_id,
        "repo_type": "space",
        "private": private,
        "hardware": cfg.hardware,
        "storage": {"bucket": cfg.storage, "mount_path": DATA_MOUNT} if cfg.storage else None,
        "env": cfg.env,
        "secrets_expected": cfg.secrets,
        "files": _listing(uploads),
    }
    if dry_run:
        return plan
    from ume_mma import hub

    api = hub._api()
    with hub._hub_errors(f"deploying the Space {repo_id!r}"):
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        info = api.create_commit(
            repo_id, [u.operation() for u in uploads], repo_type="space", commit_message="ume_mma: deploy-space"
        )
        api.request_space_hardware(repo_id, cfg.hardware)
        for key, value in cfg.env.items():
            api.add_space_variable(repo_id, key, value)
        if cfg.storage:
            from huggingface_hub import Volume

            api.create_bucket(cfg.storage, private=True, exist_ok=True)
            api.set_space_volumes(repo_id, [Volume(type="bucket", source=cfg.storage, mount_path=DATA_MOUNT)])
    return plan | {"commit": str(getattr(info, "oid", "") or "")}


def _listing(uploads: list[Upload]) -> list[dict[str, Any]]:
    return [{"path": u.path_in_repo, "bytes": u.size} for u in uploads]


def _print_plan(plan: dict[str, Any], dry_run: bool) -> None:
    head = "DRY RUN: nothing sent. Would push" if dry_run else "Pushed"
    total = sum(f["bytes"] for f in plan["files"])
    print(f"{head} {len(plan['files'])} files ({total / 2**20:.1f} MB) to the {plan['repo_type']} {plan['repo_id']}")
    for f in plan["files"]:
        print(f"  {f['path']}  ({f['bytes']:,} bytes)")
    extra = {k: v for k, v in plan.items() if k not in ("files", "repo_id", "repo_type")}
    print(json.dumps(extra, indent=2, ensure_ascii=False))
    if plan.get("secrets_expected"):
        names = ", ".join(plan["secrets_expected"])
        print(f"The Space expects the secrets {names}: set their values in its settings (never read here).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ume_mma.hub", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push-checkpoint", help="push a checkpoint folder as a Hub model repo")
    push.add_argument("folder")
    push.add_argument("repo_id")
    deploy = sub.add_parser("deploy-space", help="create or update the Space from Space.yaml")
    deploy.add_argument("repo_id")
    deploy.add_argument("--config", default=str(ROOT / "Space.yaml"))
    for p in (push, deploy):
        p.add_argument("--private", action="store_true")
        p.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    args = ap.parse_args(argv)
    try:
        if args.command == "push-checkpoint":
            plan = push_checkpoint(args.folder, args.repo_id, args.private, args.dry_run)
        else:
            plan = deploy_space(args.repo_id, args.config, args.private, args.dry_run)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_plan(plan, args.dry_run)
    return 0


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
