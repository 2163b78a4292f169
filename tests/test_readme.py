"""The README's claims: it fits (at most 300 lines) and keeps the sections a newcomer needs, its results table
is the results job's own rows; the docs' "whole change" examples (an encoder file and a fusion-mode file
dropped into a copy of the package) work with no other edit. Every code block of the README and the docs
runs in tests/test_docs.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.docblocks import WHOLE_CHANGE, all_blocks

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTIONS = [
    "Set-up: two commands",
    "Where files are written",
    "The app",
    "Access and limits",
    "Scripting the app (API)",
    "Annotation",
    "A fine-tune",
    "Results",
    "The library",
    "The docs",
]

CHECK = """
import torch
from PIL import Image
import ume_mma
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import get_spec
assert ume_mma.__file__.startswith({root!r}), ume_mma.__file__
cfg = ModelConfig(task="t", labels=["a", "b", "c"], fusion="max-prob",
                  encoders={{"image": get_spec("my_family.tiny").to_dict(),
                            "text": get_spec("scratch.hashed-text").to_dict()}})
model = MultiModalModel(cfg).eval()
x = {{"image": model.encoders["image"].preprocess([Image.new("RGB", (40, 40))] * 4),
     "text": model.encoders["text"].preprocess(["a", "b", "c", "d"])}}
present = {{"image": torch.tensor([1, 0, 1, 1]).bool(), "text": torch.tensor([1, 1, 0, 1]).bool()}}
out = model(x, present)
probs = out.fused.exp()
assert torch.allclose(probs.sum(-1), torch.ones(4), atol=1e-4)
text_only = out.branches["text"][1].softmax(-1)  # sample 1 has text only: the fused answer is the text branch
assert torch.allclose(probs[1], text_only, atol=1e-5)
print("ok")
"""


def snippets() -> dict[str, str]:
    """Docs code blocks that start with ``# ume_mma/<path>.py: the whole change``, by path."""
    return {WHOLE_CHANGE.match(b.code).group(1): b.code for b in all_blocks("file")}


RESULTS = sorted((ROOT / "results").glob("*.md"))  # every table the results job wrote


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|---")]


def test_the_readme_fits_and_keeps_the_newcomers_sections_in_order():
    assert len(README.splitlines()) <= 300
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert [h for h in headings if h in SECTIONS] == SECTIONS, headings  # others may sit between them


def test_the_readme_results_are_the_results_jobs_own_rows():
    section = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = table_rows(section)
    assert len(rows) >= 12
    produced = {row for path in RESULTS for row in table_rows(path.read_text(encoding="utf-8"))}
    assert [r for r in rows if r not in produced] == []


def test_the_results_page_holds_every_table_of_the_results_job_verbatim():
    page = [line.lstrip("#") for line in (ROOT / "docs" / "results.md").read_text(encoding="utf-8").splitlines()]
    assert {"av-digits-hard.md", "emoji-vl.md"} <= {path.name for path in RESULTS}
    for path in RESULTS:
        for line in path.read_text(encoding="utf-8").splitlines():  # headings at any level
            assert line.lstrip("#") in page, f"docs/results.md lacks this line of results/{path.name}: {line}"


def test_readme_encoder_and_fusion_examples_need_no_other_edit(tmp_path):
    files = snippets()
    assert set(files) == {"ume_mma/encoders/my_family.py", "ume_mma/fusion/max_prob.py"}
    shutil.copytree(ROOT / "ume_mma", tmp_path / "ume_mma", ignore=shutil.ignore_patterns("__pycache__"))
    for path, code in files.items():
        (tmp_path / path).write_text(code)
    run = subprocess.run(
        [sys.executable, "-c", CHECK.format(root=str(tmp_path))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tmp_path)},
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
