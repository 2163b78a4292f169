"""mkdocs hook: the plots of ``python -m ume_mma.results`` live in ``results/`` (outside ``docs/``); the site
serves them at ``results/<name>.png`` so docs/results.md shows the files the results job wrote, not copies."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config) -> Files:
    """Add every ``results/*.png`` to the site's files."""
    for png in sorted((ROOT / "results").glob("*.png")):
        files.append(File(f"results/{png.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
