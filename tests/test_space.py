"""The Space configuration: README.md's front matter (what Spaces read) is what Space.yaml generates."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_readme_front_matter_matches_space_yaml():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n", 2)[1])
    from ume_mma.space import load_space_config

    cfg = load_space_config(ROOT / "Space.yaml")
    assert front == cfg.front_matter(), "run: python -m ume_mma.space front-matter --write"
    space = cfg.space
    assert space["sdk"] == "gradio" and space["app_file"] == "app.py" and (ROOT / space["app_file"]).is_file()
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("gradio[")]
    assert pinned == [f"gradio[mcp,oauth]=={space['sdk_version']}"]
    assert space["hf_oauth"] is True  # annotating on the Space needs "Sign in with Hugging Face"
