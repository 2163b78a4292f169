"""The fenced code blocks of the README, the docs pages and the Space README, and the shell commands in them.

Each block is run by ``tests/test_docs.py`` according to its kind:
- ``python`` that starts ``# ume_mma/<path>.py: the whole change``: a file dropped into a copy of the package;
- ``python`` that makes a ``gradio_client.Client``: a script against a freshly launched app;
- any other ``python``: a script run as is from the repository root;
- ``bash``: every command is parsed by the real parser of the tool it runs (the set-up line is CI's own);
- ``json``: every line is a dataset line, parsed by the dataset loader;
- ``text``: a file tree, every named path exists.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
WHOLE_CHANGE = re.compile(r"# (ume_mma/\S+\.py): the whole change\n")
KINDS = ("file", "api", "script", "bash", "json", "text")
APP_URL = "http://127.0.0.1:7860/"


def pages() -> list[Path]:
    """Every page a reader gets: the README, the Space's README and every Markdown page of docs/."""
    return [ROOT / "README.md", ROOT / "SPACE_README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        """How a test runs this block (one of :data:`KINDS`), or None when nothing would."""
        if self.lang == "python":
            if WHOLE_CHANGE.match(self.code):
                return "file"
            return "api" if "Client(" in self.code else "script"
        return self.lang if self.lang in KINDS else None


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [Block(page, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def all_blocks(kind: str | None = None) -> list[Block]:
    found = [b for page in pages() if page.is_file() for b in blocks(page)]
    return [b for b in found if kind is None or b.kind == kind]


def commands(block: Block) -> list[str]:
    """The commands of a bash block: one per line (``\\`` continues a line), comments and spacing removed."""
    out, pending = [], ""
    for raw in block.code.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        words = shlex.split(line, comments=True)
        if words:
            quoted = (shlex.quote(w) if any(c.isspace() for c in w) else w for w in words)  # a quoted word stays one
            out.append(" ".join(quoted))
    return out


def invocation(command: str) -> tuple[str, str, list[str]]:
    """``(how, target, argv)`` of a documented command: ``("module", "ume_mma.train", [...])``,
    ``("path", "app.py", [...])``, or ``("shell", command, [])`` for a line that is not one Python tool."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words[:2] == ["accelerate", "launch"] and "-m" in words:
        words = ["python", *words[words.index("-m") :]]
    if "&&" not in words and len(words) > 1 and re.fullmatch(r"(\.venv/bin/)?python3?", words[0]):
        if words[1] == "-m":
            return "module", words[2], words[3:]
        return "path", words[1], words[2:]
    return "shell", command, []
