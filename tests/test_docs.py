"""Every code block of README.md, SPACE_README.md and docs/*.md is run (see tests/docblocks.py for how each
kind is run), and the docs site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docblocks import APP_URL, KINDS, ROOT, all_blocks, commands, invocation

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def run_python(code: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def ids(blocks) -> list[str]:
    return [b.id for b in blocks]


def test_every_block_has_a_runner():
    found = all_blocks()
    assert len(found) >= 20, "the pages' code blocks were not found"
    orphans = [f"{b.id} ({b.lang or 'no language'})" for b in found if b.kind not in KINDS]
    assert not orphans, f"no test runs these blocks (tag them python, bash, json or text): {orphans}"


def test_mkdocs_build_strict(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**ENV, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert (tmp_path / "site" / "results" / "av-digits-hard-missing-rate.png").is_file()


SCRIPTS = all_blocks("script")


@pytest.mark.parametrize("block", SCRIPTS, ids=ids(SCRIPTS))
def test_script_block_runs_as_pasted(block):
    run = run_python(block.code)
    assert run.returncode == 0, f"{block.id}\n{run.stderr[-3000:]}"


# ------------------------------------------------------------------------------------- against a fresh app
@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """The app as ``python app.py`` serves it on a fresh machine: the shipped checkpoint, an empty database."""
    gr = pytest.importorskip("gradio")  # noqa: F841
    import app
    from ui.annotate import Access
    from ume_mma.annotate import open_store
    from ume_mma.predictor import Limits

    store = open_store(tmp_path_factory.mktemp("fresh") / "annotations.db")
    demo = app.build_demo(app.DEFAULT_CHECKPOINT, pool=app.PredictorPool(Limits()), store=store, access=Access("local"))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


FRESH = [b for b in all_blocks("api") if "/start_job" not in b.code]


@pytest.mark.parametrize("block", FRESH, ids=ids(FRESH))
def test_api_block_runs_as_pasted_against_a_fresh_app(block, fresh_app):
    assert APP_URL in block.code, f"{block.id}: an API example names the app's address {APP_URL}"
    run = run_python(block.code.replace(APP_URL, fresh_app.local_url))
    assert run.returncode == 0, f"{block.id}\n{run.stderr[-3000:]}"


JOBS = [b for b in all_blocks("api") if "/start_job" in b.code]


@pytest.fixture(scope="module")
def app_after_the_docs_steps(tmp_path_factory, av_builds, spoken_icons_build):
    """The app as it stands after the steps the fine-tune examples name: the base data built at
    ``data/av-digits-clean`` and a labelled queue ``shift`` (here both from a small real av-digits build), and
    ``data/spoken-icons`` (a small real build), served from a folder laid out like the clone (the examples'
    relative paths resolve as they would)."""
    pytest.importorskip("gradio")
    import app
    from ui.annotate import Access
    from ume_mma.annotate import AnnotationQueue, import_dataset, open_store
    from ume_mma.predictor import Limits

    work = tmp_path_factory.mktemp("clone")
    for name in ("checkpoints", "assets", "configs"):
        (work / name).symlink_to(ROOT / name)
    (work / "data").mkdir()
    (work / "data" / "av-digits-clean").symlink_to(av_builds["clean"])
    (work / "data" / "spoken-icons").symlink_to(spoken_icons_build)
    store = open_store(work / "annotations.db")
    import_dataset(store, av_builds["clean"], "shift")
    queue = AnnotationQueue(store, "shift")
    while (item := queue.next_item("tester")) is not None:
        queue.submit(item.id, item.given_label, "tester")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("OMP_NUM_THREADS", "1")
        demo = app.build_demo(
            "checkpoints/av-digits", pool=app.PredictorPool(Limits()), store=store, access=Access("local")
        )
        app.launch_app(demo, prevent_thread_lock=True, quiet=True)
        try:
            yield demo, work
        finally:
            demo.close()


@pytest.mark.parametrize("block", JOBS, ids=ids(JOBS))
def test_job_block_runs_as_pasted_after_the_steps_it_names(block, app_after_the_docs_steps):
    demo, work = app_after_the_docs_steps
    run = run_python(block.code.replace(APP_URL, demo.local_url), cwd=work, timeout=900)
    assert run.returncode == 0, f"{block.id}\n{run.stderr[-3000:]}"
    lines = [line for line in run.stdout.splitlines() if not line.startswith("Loaded as API")]
    state, checkpoint = lines[0].split()[0], lines[-1].split()[0]
    assert state == "succeeded" and (Path(checkpoint) / "model.safetensors").is_file(), run.stdout


# ------------------------------------------------------------------------------------------ shell commands
def documented_commands() -> list[tuple[str, str]]:
    """(block id, command) for every shell command of every page; a line with ``&&`` gives each part,
    unless CI runs that very line."""
    out = []
    for block in all_blocks("bash"):
        for command in commands(block):
            if command in CI:
                continue
            out += [(block.id, part.strip()) for part in command.split("&&")]
    return out


def test_every_shell_command_is_a_python_tool_or_what_ci_runs():
    strays = [(where, c) for where, c in documented_commands() if invocation(c)[0] == "shell" and c not in CI]
    assert not strays, f"commands no test parses (and .ci/run does not run): {strays}"


def test_every_documented_command_parses_with_its_tool():
    todo = [(where, c, invocation(c)) for where, c in documented_commands()]
    todo = [(where, c, inv) for where, c, inv in todo if inv[0] != "shell"]
    assert len(todo) >= 30
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "parse_commands.py")],
        input=json.dumps([inv for _, _, inv in todo]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(todo), run.stdout[-2000:] + run.stderr[-2000:]
    bad = [f"{where}: {c}\n    -> {r['stderr'].strip()}" for (where, c, _), r in zip(todo, results) if not r["ok"]]
    assert not bad, "documented commands that their tool refuses:\n" + "\n".join(bad)


def test_the_setup_commands_are_the_ones_ci_runs():
    setup = [b for b in all_blocks("bash") if b.id.startswith("README.md")][0]
    lines = commands(setup)
    assert lines[1] in CI, "the README's test command is what .ci/run runs"
    assert lines[0].split(" && ")[0] in CI, "the README's set-up command is what .ci/run runs"
    assert "mkdocs build --strict" in " ".join(CI)


# ---------------------------------------------------------------------------------------- data and files
def test_dataset_lines_parse_with_the_dataset_loader():
    from ume_mma.data.format import parse_sample

    lines = [(b.id, line) for b in all_blocks("json") for line in b.code.splitlines() if line.strip()]
    assert lines
    for where, line in lines:
        parse_sample(json.loads(line), where)  # raises DatasetFormatError naming the field


def test_file_trees_name_files_that_exist():
    """Lines of the layout name paths (``name  description``); an indented one lies in the folder above it."""
    (tree,) = all_blocks("text")
    missing, folder = [], ""
    for line in tree.code.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent > 2:  # a continued description
            continue
        names = line.strip().split("  ")[0].split()
        parent = folder if indent == 2 else ""
        missing += [parent + n for n in names if not (ROOT / parent / n.rstrip("/")).exists()]
        if indent == 0 and names[-1].endswith("/"):
            folder = names[-1]
    assert not missing, f"the layout names paths that do not exist: {missing}"


def test_every_relative_link_of_the_readme_resolves():
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert len(targets) >= 10
    for target in targets:
        if target.startswith(("http", "#")):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).is_file(), f"README links to {target}, which is not a file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {target}: no such heading"
