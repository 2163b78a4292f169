"""The importers in the launched app (gradio_client, real files, real SQLite): each importer from a path on the
server and from uploads into a new dataset folder, a queue with labels the checkpoint does not know, bad input
refused in the command line's words with nothing written, and the rule of who may import (admins; never in
public mode)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.test_app_annotate import AV, USERS  # noqa: E402
from tests.test_imports import make_class_folders  # noqa: E402
from tests.test_labelstudio import ls_export  # noqa: E402
from tests.tiny import make_tiny_dataset  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ui.errors import scrub  # noqa: E402
from ume_mma.annotate import open_store  # noqa: E402
from ume_mma.data.__main__ import main as data_main  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.home import datasets_root  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

CLASS_ROWS = {"a": 7, "b": 7, "c": 7}  # make_class_folders: train 3 + validation 2 + test 2 per label


def launch(tmp_path: Path, access: Access, auth=None):
    store = open_store(tmp_path / "annotations.db")
    demo = app.build_demo(AV, pool=app.PredictorPool(Limits()), store=store, access=access)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, auth=auth)
    return demo, store


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("import-app")
    demo, store = launch(tmp, Access("local", "ada"))
    try:
        yield Client(demo.local_url, verbose=False), store, tmp
    finally:
        demo.close()


def call(client: Client, importer: str, source: str = "", uploads=None, dataset: str = "", queue: str = "",
         options=None, labels=None):  # fmt: skip
    return client.predict(importer, source, uploads or [], dataset, queue, "", options, labels, "",
                          api_name="/import_data")  # fmt: skip


def written(store) -> list[str]:
    """What the data folder's datasets folder holds (hidden staging folders included)."""
    root = datasets_root(store.media.root)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def csv_source(tmp: Path, label_column: str = "class", image_of=None) -> Path:
    """list.csv beside media/: one row per tiny sample (image + audio), labels in ``label_column``."""
    data = make_tiny_dataset(tmp / "media", {"train": 2, "test": 1})
    rows = [json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines()]
    path = tmp / "list.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([label_column, "image", "audio", "split"])
        for r in rows:
            w.writerow([r["label"], f"media/{(image_of or {}).get(r['id'], r['image'])}", f"media/{r['audio']}",
                        r["split"]])  # fmt: skip
    return path


def hf_source(tmp: Path) -> Path:
    from ume_mma.data.imports.hf import export_hf

    return export_hf(make_tiny_dataset(tmp / "ours", {"train": 2, "val": 1, "test": 1}), tmp / "parquet")


@pytest.mark.parametrize("importer", ["dataset", "folder", "csv", "hf", "label-studio"])
def test_each_importer_from_a_server_path_into_a_new_dataset_folder(served, importer, tmp_path):
    client, store, _ = served
    options = None
    if importer == "dataset":
        source, rows = make_tiny_dataset(tmp_path / "ours", {"train": 2, "val": 1, "test": 1}), 12
    elif importer == "folder":
        make_class_folders(tmp_path / "clips")
        source, rows = tmp_path / "clips", 21
    elif importer == "csv":
        source, rows, options = csv_source(tmp_path), 9, {"label": "class"}
    elif importer == "hf":
        source, rows = hf_source(tmp_path), 12
    else:
        source, _ = ls_export(tmp_path)
        rows, options = 10, {"media_root": str(tmp_path / "files")}
    s = call(client, importer, str(source), dataset=f"mine-{importer}", options=options)
    assert (s["importer"], s["rows"], s["dataset"], s["queue"]) == (importer, rows, f"mine-{importer}", None)
    folder = Path(s["folder"])
    assert folder == datasets_root(store.media.root) / f"mine-{importer}"
    ds = load_dataset(folder)  # the one dataset format, every file copied in
    assert len(ds) == rows and sorted(s["labels"]) == ds.labels == ["a", "b", "c"]
    assert s["labels"] == {label: sum(x.label == label for x in ds) for label in ds.labels}
    assert set(s["modalities"]) == set(ds.modalities) and {"audio", "image"} <= set(ds.modalities)
    assert all(str(x.path(m)).startswith(str(folder)) for x in ds for m in ("image", "audio") if x.has(m))
    if importer == "folder":
        assert s["labels"] == CLASS_ROWS and s["modalities"]["text"] == 7  # label a's .txt files
    if importer == "label-studio":
        assert s["skipped"] == ["2 tasks without an annotation (no label): left out"]
    else:
        assert s["skipped"] == []


def test_uploads_a_zip_of_class_subfolders_a_csv_with_its_files_and_a_label_studio_export(served, tmp_path):
    client, store, _ = served
    make_class_folders(tmp_path / "clips", splits=False)
    zipped = tmp_path / "clips.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for f in sorted((tmp_path / "clips").rglob("*")):
            if f.is_file():
                z.write(f, f"clips/{f.relative_to(tmp_path / 'clips')}")
        z.writestr("__MACOSX/clips/._a", b"\x00")  # what macOS's Compress adds: left out, and said so
    s = call(client, "class subfolders", uploads=[handle_file(str(zipped))], dataset="zipped")
    assert (s["rows"], s["labels"]) == (6, {"a": 2, "b": 2, "c": 2})
    assert s["skipped"] == ["1 macOS resource file (__MACOSX/, ._*, .DS_Store): left out"]
    # a CSV and its files, uploaded side by side (paths in the CSV are the files' names)
    source = csv_source(tmp_path / "c")
    flat = tmp_path / "flat.csv"
    lines = source.read_text().splitlines()
    flat.write_text("\n".join([lines[0]] + [",".join([r.split(",")[0], *(Path(x).name for x in r.split(",")[1:3]),
                                                     r.split(",")[3]]) for r in lines[1:]]) + "\n")  # fmt: skip
    files = [
        flat,
        *sorted((tmp_path / "c" / "media").rglob("*.png")),
        *sorted((tmp_path / "c" / "media").rglob("*.wav")),
    ]
    s = call(client, "csv", uploads=[handle_file(str(f)) for f in files], dataset="csv-up", options="label=class")
    assert s["rows"] == 9 and load_dataset(s["folder"]).labels == ["a", "b", "c"]
    # a Label Studio export and its media in one zip, media_root inside it
    path, _ = ls_export(tmp_path / "ls")
    with zipfile.ZipFile(tmp_path / "ls.zip", "w") as z:
        z.write(path, "export.json")
        for f in sorted((tmp_path / "ls" / "files").rglob("*")):
            if f.is_file():
                z.write(f, f"files/{f.relative_to(tmp_path / 'ls' / 'files')}")
    s = call(client, "label-studio", uploads=[handle_file(str(tmp_path / "ls.zip"))], dataset="ls-up",
             options={"media_root": "files"})  # fmt: skip
    assert s["rows"] == 10 and s["skipped"] == ["2 tasks without an annotation (no label): left out"]
    # parquet files (a Hugging Face dataset's), and a zip of a dataset folder of ours
    parquet = sorted((hf_source(tmp_path / "hf") / "data").glob("*.parquet"))
    s = call(client, "hf", uploads=[handle_file(str(f)) for f in parquet], dataset="hf-up")
    assert (s["rows"], s["labels"]) == (12, {"a": 4, "b": 4, "c": 4})
    ours = shutil.make_archive(str(tmp_path / "ours"), "zip", make_tiny_dataset(tmp_path / "o", {"train": 1}))
    s = call(client, "dataset", uploads=[handle_file(ours)], dataset="ours-up")
    assert s["rows"] == 3 and s["modalities"] == {"audio": 3, "image": 3}
    assert not [n for n in written(store) if n.startswith(".")]  # no staging folder left


def test_new_labels_go_into_a_queue_with_a_note_and_only_the_queues_labels_are_taken(served, tmp_path):
    """Letters a, b, c into a queue predicted by av-digits (digits): accepted, predicted with the digits, the
    letters offered as choices; a label outside the queue's set is still refused at submit."""
    client, store, _ = served
    make_class_folders(tmp_path / "letters", splits=False)
    s = call(client, "folder", str(tmp_path / "letters"), queue="letters", labels="d")
    q = s["queue"]
    assert (q["queue"], q["added"], q["total"], q["new_labels"]) == ("letters", 6, 6, ["a", "b", "c"])
    assert s["dataset"] is None and s["folder"] is None  # into the queue only: no dataset folder kept
    assert s["notes"] == [f"note: labels ['a', 'b', 'c'] are new to checkpoint {AV}: the queue is predicted with "
                          "its labels; the new ones are offered in the label choices (a fine-tune from this queue "
                          "grows the heads for them)"]  # fmt: skip
    digits = [str(d) for d in range(10)]
    assert q["labels"] == sorted(["a", "b", "c", "d", *digits])
    item = client.predict("letters", api_name="/next_item")
    assert set(item["labels"]) == {"a", "b", "c", "d", *digits}  # what the Annotate tab's label choice lists
    assert item["prediction"]["fused"]["label"] in digits  # predicted with the base labels
    with pytest.raises(AppError, match=r"unknown label 'zebra'; the labels are \["):
        client.predict(item["id"], "zebra", {}, "", "letters", api_name="/submit_item")
    assert client.predict(item["id"], "d", {}, "", "letters", api_name="/submit_item")["label"] == "d"
    # /import_queue with the checkpoint: the same acceptance, said in new_labels and note
    r = client.predict(str(make_tiny_dataset(tmp_path / "tiny", {"train": 1})), "q2", "file", "", None, 0.0, "",
                       api_name="/import_queue")  # fmt: skip
    assert (r["added"], r["new_labels"]) == (3, ["a", "b", "c"]) and r["note"] == s["notes"][0]


def _cli_error(capsys, *argv: str) -> str:
    assert data_main(["import", *argv]) == 1
    return capsys.readouterr().err.strip().removeprefix("error: ")


def bad_inputs(tmp: Path) -> dict[str, tuple]:
    """importer, source, options, the CLI's arguments (source and out added), the words."""
    missing = csv_source(tmp / "missing")
    (tmp / "missing" / "media" / "images" / "train-a-0.png").unlink()
    nolabel = csv_source(tmp / "nolabel")
    audio_as_image = csv_source(tmp / "swap", image_of={"train-b-1": "audio/train-b-1.wav"})
    ls, _ = ls_export(tmp / "ls")
    tasks = json.loads(ls.read_text())
    tasks[4]["data"] = {}
    ls.write_text(json.dumps(tasks))
    return {
        "a missing file": ("csv", missing, {"label": "class"}, ["--label", "class"],
                           "train-a-0.png: file does not exist"),
        "a label column that is not there": ("csv", nolabel, {"label": "genre"}, ["--label", "genre"],
                                             "no label column 'genre'; the columns are ['class', 'image'"),
        "an image column holding audio": ("csv", audio_as_image, {"label": "class"}, ["--label", "class"],
                                          "train-b-1.wav is not a readable image"),
        "a Label Studio task without data": ("label-studio", ls, {"media_root": str(tmp / "ls" / "files")},
                                             ["--media-root", str(tmp / "ls" / "files")],
                                             "export.json task 5: has no data"),
    }  # fmt: skip


def test_bad_input_is_refused_in_the_command_lines_words_and_imports_nothing(served, tmp_path, capsys):
    client, store, _ = served
    before, files = store.counts(), written(store)
    for case, (importer, source, options, flags, words) in bad_inputs(tmp_path).items():
        with pytest.raises(AppError) as exc:
            call(client, importer, str(source), dataset="bad", queue="bad", options=options)
        said = str(exc.value)
        assert words in said, (case, said)
        cli = _cli_error(capsys, importer, str(source), str(tmp_path / "cli-out"), *flags)
        assert scrub(cli) in said, (case, cli, said)  # the same sentence (server folders cut to names)
        assert not (tmp_path / "cli-out").exists()
    assert store.counts() == before and written(store) == files  # no dataset, no queue, no staging folder
    for args, words in [
        (("csv", str(tmp_path / "nope.csv"), None, "x"), "nope.csv: no such file or folder"),
        (("csv", str(csv_source(tmp_path / "ok")), None, "x", "", {"seed": "one"}), "option seed must be a whole"),
        (("folder", str(tmp_path)), "import into what? Name a new dataset, a queue, or both"),
        (("hf", str(tmp_path), None, "x", "", {"root": "media"}), "option 'root' is not one of the hf importer's"),
        (("sideways", str(tmp_path), None, "x"), "unknown importer 'sideways'; the importers are 'dataset'"),
        (("folder", str(tmp_path), None, "../up"), "a dataset name is letters, digits"),
        (("folder", "", None, "x"), "give the source (a folder of class subfolders) on the server, or upload it"),
    ]:
        with pytest.raises(AppError, match=re.escape(words)):
            call(client, *args)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.png", b"x")
    with pytest.raises(AppError, match=r"evil.zip: member '../outside.png' points outside the archive"):
        call(client, "folder", uploads=[handle_file(str(evil))], dataset="evil")
    assert store.counts() == before and written(store) == files


def test_a_dataset_name_in_use_is_refused(served, tmp_path):
    client, store, _ = served
    make_class_folders(tmp_path / "clips", splits=False)
    call(client, "folder", str(tmp_path / "clips"), dataset="twice")
    with pytest.raises(AppError, match="dataset 'twice' exists already in the data folder: choose a new name"):
        call(client, "folder", str(tmp_path / "clips"), dataset="twice")


def test_only_admins_import_and_never_in_public_mode(tmp_path):
    make_class_folders(tmp_path / "clips", splits=False)
    zipped = shutil.make_archive(str(tmp_path / "clips"), "zip", tmp_path / "clips")
    demo, store = launch(tmp_path / "login", Access("login", admins=frozenset({"alice"})), auth=USERS)
    try:
        bob = Client(demo.local_url, auth=USERS[1], verbose=False)
        with pytest.raises(AppError, match="Only an admin may import data; bob is annotator"):
            call(bob, "folder", str(tmp_path / "clips"), dataset="x")
        alice = Client(demo.local_url, auth=USERS[0], verbose=False)
        assert call(alice, "folder", uploads=[handle_file(zipped)], dataset="x")["rows"] == 6
    finally:
        demo.close()
    demo, store = launch(tmp_path / "public", Access("login", server_paths=False), auth=USERS)
    try:
        c = Client(demo.local_url, auth=USERS[0], verbose=False)
        for kwargs in ({"source": str(tmp_path / "clips")}, {"uploads": [handle_file(zipped)]}):
            with pytest.raises(AppError, match=r"does not read folders on the server \(importing data\)"):
                call(c, "folder", dataset="x", **kwargs)
        assert written(store) == [] and store.counts()["queues"] == 0
    finally:
        demo.close()


def test_into_a_queue_alone_rows_without_a_label_are_items_to_annotate(served, tmp_path):
    """A Label Studio project's tasks without an annotation, and a CSV's empty label cells, become items to
    annotate when the import goes into a queue alone (a dataset folder for training needs every label)."""
    client, store, _ = served
    path, rows = ls_export(tmp_path / "ls")
    options = {"media_root": str(tmp_path / "ls" / "files")}
    s = call(client, "label-studio", str(path), queue="ls-queue", options=options)
    assert (s["rows"], s["unlabelled"], s["skipped"], s["queue"]["added"]) == (12, 2, [], 12)
    assert sum(s["labels"].values()) == 10
    source = csv_source(tmp_path / "c")
    lines = source.read_text().splitlines()
    source.write_text("\n".join([lines[0], *("," + x.split(",", 1)[1] for x in lines[1:4]), *lines[4:]]) + "\n")
    with pytest.raises(AppError, match="list.csv line 2: empty label"):  # a dataset folder needs the labels
        call(client, "csv", str(source), dataset="half", options={"label": "class"})
    s = call(client, "csv", str(source), queue="csv-queue", options={"label": "class"})
    assert (s["rows"], s["unlabelled"], s["queue"]["added"]) == (9, 3, 9)
    given = set()
    while (item := client.predict("csv-queue", api_name="/next_item")) is not None:
        given.add(item["given_label"])
        client.predict(item["id"], "a", {}, "", "csv-queue", api_name="/submit_item")
    assert given == {None, "a", "b", "c"}
