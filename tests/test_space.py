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


def test_front_matter_check_exits_1_with_a_one_line_summary(tmp_path, capsys):
    from ume_mma.space import main

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    config = ["--config", str(ROOT / "Space.yaml"), "--readme", str(readme)]
    assert main(["front-matter", "--check", *config]) == 0
    assert "front matter matches Space.yaml" in capsys.readouterr().out
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace("suggested_hardware: cpu-basic", "suggested_hardware: t4-small\ncolor: red"))
    assert main(["front-matter", "--check", *config]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "front matter differs from Space.yaml" in err, err
    assert "suggested_hardware: README 't4-small', Space.yaml 'cpu-basic'" in err and "not in Space.yaml: color" in err
    readme.write_text(text.replace("pinned: false\n", ""))
    assert main(["front-matter", "--check", *config]) == 1
    assert "missing from README: pinned" in capsys.readouterr().err
    readme.write_text("# no front matter\n")
    assert main(["front-matter", "--check", *config]) == 1
    assert "README.md has no front matter" in capsys.readouterr().err
    assert readme.read_text() == "# no front matter\n"  # --check writes nothing


def test_ci_runs_the_front_matter_check_after_the_linters():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    check = lines.index(".venv/bin/python -m ume_mma.space front-matter --check")
    assert check == lines.index(".venv/bin/ruff format --check .") + 1
