"""The README's "whole change" examples: an encoder file and a fusion-mode file dropped into a copy of the
package work with no other edit (the factory and the fusion package find them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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
    """README code blocks that start with ``# ume_mma/<path>.py: the whole change``, by path."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"```python\n# (ume_mma/\S+\.py): the whole change\n(.*?)```", text, re.S))


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
