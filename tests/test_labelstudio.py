"""Label Studio both ways, on real files: a project's JSON export -> our folder -> an annotation queue ->
annotations -> Label Studio tasks with our branch and fused predictions -> back again; bad exports refused in
words, writing nothing."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.jobsutil import make_base
from tests.tiny import WORDS, make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store, predict_queue
from ume_mma.data.__main__ import main
from ume_mma.data.format import load_dataset
from ume_mma.data.imports.labelstudio import export_label_studio, import_label_studio
from ume_mma.data.imports.staging import ImportRefused
from ume_mma.predictor import Predictor


def _choice(label: str, control: str = "class") -> dict:
    return {"id": "r1", "from_name": control, "to_name": "image", "type": "choices", "value": {"choices": [label]}}


def ls_export(root: Path) -> tuple[Path, list[dict]]:
    """A Label Studio JSON export as the app writes it, over real files: images served as local files, audio as
    uploads. 12 tasks: 10 annotated (one cancelled then redone, one relabelled, one with a box beside its choice),
    2 not annotated yet."""
    pool = make_tiny_dataset(root / "files" / "pool", {"train": 4})
    rows = [json.loads(x) for x in (pool / "metadata.jsonl").read_text().splitlines()]
    (root / "files" / "upload" / "3").mkdir(parents=True)
    tasks = []
    for n, r in enumerate(rows, start=1):
        name = f"{n:02d}-{Path(r['audio']).name}"
        shutil.copyfile(pool / r["audio"], root / "files" / "upload" / "3" / name)
        data = {"image": f"/data/local-files/?d=pool/{r['image']}", "audio": f"/data/upload/3/{name}"}
        if n % 2:
            data["text"] = WORDS[r["label"]]
        anns = [{"id": 100 + n, "result": [_choice(r["label"])], "was_cancelled": False, "completed_by": 1}]
        if n == 2:
            anns.insert(0, {"id": 99, "result": [_choice("b")], "was_cancelled": True})
        if n == 3:
            anns.append({"id": 200, "result": [_choice("c")], "was_cancelled": False})  # the last one counts
        if n == 4:
            box = {"from_name": "box", "to_name": "image", "type": "rectanglelabels", "value": {"x": 1, "y": 2}}
            anns[0]["result"].insert(0, box)
        tasks.append({"id": n, "data": data, "annotations": anns if n <= 10 else [], "predictions": [],
                      "project": 3, "created_at": "2026-12-01T10:00:00Z"})  # fmt: skip
    path = root / "export.json"
    path.write_text(json.dumps(tasks))
    return path, rows


def test_round_trip_label_studio_to_queue_to_label_studio(tmp_path):
    path, rows = ls_export(tmp_path)
    out, unlabelled = import_label_studio(path, tmp_path / "ours", media_root=tmp_path / "files")
    ds = load_dataset(out)
    expected = [r["label"] for r in rows[:10]]
    expected[2] = "c"  # task 3's last annotation
    assert unlabelled == 2 and [s.label for s in ds] == expected and [s.id for s in ds] == [f"ls-{n}" for n in
                                                                                           range(1, 11)]  # fmt: skip
    for s, r in zip(ds, rows, strict=False):
        assert s.path("image").read_bytes() == (tmp_path / "files" / "pool" / r["image"]).read_bytes()
        assert s.path("audio").read_bytes() == (tmp_path / "files" / "pool" / r["audio"]).read_bytes()
        assert s.meta["label_studio_task"] == int(s.id[3:])
    assert [s.text is not None for s in ds] == [n % 2 == 1 for n in range(1, 11)]
    # -> a queue, predicted by a checkpoint, annotated (one relabelled by the annotator)
    store = open_store(tmp_path / "a.db")
    import_dataset(store, out, "ls")
    predict_queue(store, Predictor.from_pretrained(make_base(tmp_path / "base")), "ls", show_progress=False)
    queue, ours = AnnotationQueue(store, "ls"), {}
    while (item := queue.next_item("alice")) is not None:
        label = "a" if item.source_id == "ls-5" else item.given_label
        queue.submit(item.id, label, "alice")
        ours[item.id] = (label, item.prediction, item.inputs)
    # -> Label Studio tasks with our annotations and predictions
    folder = export_label_studio(store, "ls", tmp_path / "to-ls")
    tasks = json.loads((folder / "tasks.json").read_text())
    assert len(tasks) == 10 and sorted(t["id"] for t in tasks) == sorted(ours)
    for t in tasks:
        label, prediction, inputs = ours[t["id"]]
        assert [a["result"][0]["value"]["choices"] for a in t["annotations"]] == [[label]]
        ref = t["data"]["image"].split("?d=")[1]
        assert ref.startswith("to-ls/media/") and (tmp_path / ref).read_bytes() == Path(inputs["image"]).read_bytes()
        assert t["data"].get("text") == inputs.get("text")
        got = {p["model_version"].rsplit("(", 1)[1].rstrip(")"): p for p in t["predictions"]}
        assert sorted(got) == ["audio branch", "fused", "image branch"]  # the checkpoint's branches
        assert got["fused"]["result"][0]["value"]["choices"] == [prediction["fused"]["label"]]
        for m in ("audio", "image"):
            branch = prediction["branches"][m]
            assert got[f"{m} branch"]["result"][0]["value"]["choices"] == [branch["label"]]
            assert got[f"{m} branch"]["score"] == pytest.approx(branch["confidences"][branch["label"]])
        for p in t["predictions"]:  # every result names the exported control and an object of the config
            result = p["result"][0]
            assert (result["from_name"], result["to_name"], result["type"]) == ("label", "audio", "choices")
    config = ET.fromstring((folder / "label_config.xml").read_text())
    assert {e.get("name"): (e.tag, e.get("value")) for e in config if e.tag != "Choices"} == {
        "audio": ("Audio", "$audio"), "image": ("Image", "$image"), "text": ("Text", "$text")}  # fmt: skip
    objects = {e.get("name") for e in config if e.tag != "Choices"}
    (choices,) = [e for e in config if e.tag == "Choices"]
    assert objects == {"audio", "image", "text"} and choices.get("toName") == "audio"
    assert [c.get("value") for c in choices] == queue.labels()
    # -> and back: Label Studio's local-files root is the export's parent
    back, left = import_label_studio(folder / "tasks.json", tmp_path / "back", media_root=tmp_path)
    by_task = {s.meta["label_studio_task"]: s for s in load_dataset(back)}
    assert left == 0 and {i: s.label for i, s in by_task.items()} == {i: v[0] for i, v in ours.items()}


@pytest.mark.parametrize(
    "case, message",
    [
        ("no data", "task 4: has no data"),
        ("web url", "task 4: https://example.com/x.png is a web or cloud URL"),
        ("missing file", r"task 4: .*pool/images/gone.png: file does not exist"),
        ("two choices", r"task 4: needs exactly one choice per task \(single-label\), got \['a', 'b'\]"),
        ("audio as image", r"task 4: .*\.wav is not a readable image"),
        ("not a list", "a Label Studio JSON export is a list of tasks, got dict"),
    ],
)
def test_bad_label_studio_exports_are_refused_and_write_nothing(tmp_path, case, message):
    path, _ = ls_export(tmp_path)
    tasks = json.loads(path.read_text())
    t = tasks[3]
    if case == "no data":
        del t["data"]
    elif case == "web url":
        t["data"]["image"] = "https://example.com/x.png"
    elif case == "missing file":
        t["data"]["image"] = "/data/local-files/?d=pool/images/gone.png"
    elif case == "two choices":
        t["annotations"][0]["result"][-1]["value"]["choices"] = ["a", "b"]
    elif case == "audio as image":
        t["data"]["image"] = t["data"]["audio"]
    else:
        tasks = {"tasks": tasks}
    path.write_text(json.dumps(tasks))
    with pytest.raises(ImportRefused, match=message):
        import_label_studio(path, tmp_path / "out", media_root=tmp_path / "files")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_the_cli_both_ways(tmp_path, capsys):
    path, _ = ls_export(tmp_path)
    argv = ["import", "label-studio", str(path), str(tmp_path / "ours"), "--media-root", str(tmp_path / "files")]
    assert main(argv) == 0
    assert "imported (2 tasks without an annotation left out)" in capsys.readouterr().out
    db = str(tmp_path / "a.db")
    import_dataset(open_store(db), tmp_path / "ours", "ls")
    assert main(["export", "label-studio", str(tmp_path / "to-ls"), "--queue", "ls", "--db", db]) == 0
    assert "tasks.json" in capsys.readouterr().out
    tasks = json.loads((tmp_path / "to-ls" / "tasks.json").read_text())
    assert len(tasks) == 10 and all(t["annotations"] == [] and t["predictions"] == [] for t in tasks)
    assert main(["export", "label-studio", str(tmp_path / "x"), "--queue", "nope", "--db", db]) == 1
    assert capsys.readouterr().err == "error: no queue 'nope' in this store\n" and not (tmp_path / "x").exists()


def test_several_choices_controls_need_from_name_and_urls_resolve_under_the_media_root(tmp_path):
    from ume_mma.data.imports.labelstudio import resolve

    path, rows = ls_export(tmp_path)
    tasks = json.loads(path.read_text())
    for t in tasks[:10]:  # a second Choices control (say, the speaker) beside the class
        t["annotations"][-1]["result"].append(_choice("f", control="speaker"))
    path.write_text(json.dumps(tasks))
    with pytest.raises(ImportRefused, match=r"several Choices controls \['class', 'speaker'\]: pick one"):
        import_label_studio(path, tmp_path / "out", media_root=tmp_path / "files")
    out, _ = import_label_studio(path, tmp_path / "out", media_root=tmp_path / "files", from_name="class")
    assert "f" not in load_dataset(out).labels
    root = tmp_path / "files"
    assert resolve("/data/upload/3/01-train-a-0.wav", root, "t") == root / "upload" / "3" / "01-train-a-0.wav"
    assert resolve("/data/upload/9/x.png", root, "t") == root / "x.png"  # not under upload/9: by its name
    assert resolve("/data/local-files/?d=pool%2Fimages%2Fa.png", root, "t") == root / "pool" / "images" / "a.png"
    assert resolve("pool/a.png", root, "t") == root / "pool" / "a.png"
