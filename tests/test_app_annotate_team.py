"""Annotation by a team through the launched app (gradio_client, --auth with roles) on real SQLite and real
PostgreSQL: an admin imports a queue with overlap 2 and a gold set; three annotators work through it; each
item gets exactly two labels from two people; nobody reads another's label before giving its own; the
agreement in /annotation_stats equals the reference implementations on the labels given; gold accuracy; a
reviewer resolves a disagreement, export uses the resolution, and the history keeps every change; each role
is refused what it may not do."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
krippendorff = pytest.importorskip(
    "krippendorff", reason="the reference implementation: pip install krippendorff==0.9.0"
)
import numpy as np  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.pg import pg_server  # noqa: E402, F401  (the PostgreSQL fixture)
from tests.test_app_annotate import ASSETS, AV  # noqa: E402
from ui.annotate import Access, recent  # noqa: E402
from ume_mma.annotate import open_store, schema  # noqa: E402
from ume_mma.annotate.agreement import fleiss_kappa  # noqa: E402
from ume_mma.annotate.export import export  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ANNOTATORS = ["ann", "bob", "cy"]
USERS = [(name, f"pw-{name}") for name in [*ANNOTATORS, "rita", "adam"]]
ROLES = {"rita": "reviewer", "adam": "admin"}  # the others have two-column lines: annotators
IMAGE7, AUDIO7 = "agree_7_image_7.png", "agree_7_speech_7_en_US_f_Allison.wav"
IMAGE2, AUDIO5 = "disagree_2_5_image_2.png", "disagree_2_5_speech_5_es_MX_f_Allison.wav"
IMAGE3, AUDIO3 = "drift_3_image_3_opencv.png", "drift_3_speech_3_en_US_f_Allison.wav"
ROWS = [  # (id, files, true label): six single-modality items
    ("s0", {"image": IMAGE7}, "7"), ("s1", {"audio": AUDIO7}, "7"), ("s2", {"image": IMAGE2}, "2"),
    ("s3", {"audio": AUDIO5}, "5"), ("s4", {"image": IMAGE3}, "3"), ("s5", {"audio": AUDIO3}, "3"),
]  # fmt: skip
GOLD = [("g0", {"image": IMAGE7, "audio": AUDIO7}, "7"), ("g1", {"image": IMAGE3, "audio": AUDIO3}, "3")]
MISTAKES = {("bob", "s1"), ("bob", "g1"), ("cy", "s4"), ("cy", "g0"), ("ann", "s3")}  # these give "9"


def labelled_folder(folder: Path, rows) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for sid, files, label in rows:
        for name in files.values():
            (folder / name).write_bytes((ASSETS / name).read_bytes())
        lines.append(json.dumps({"id": sid, **files, "label": label}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


TRUE = {sid: label for sid, _, label in ROWS + GOLD}


def label_of(who: str, source_id: str) -> str:
    return "9" if (who, source_id) in MISTAKES else TRUE[source_id]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def team(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"team-{request.param}")
    if request.param == "sqlite":
        store = open_store(tmp / "team.db")
    else:
        store = open_store(request.getfixturevalue("pg_server").create_database(), tmp / "media")
    access = Access("login", roles=ROLES, admins=frozenset(), reviewers=frozenset())
    demo = app.build_demo(AV, pool=app.PredictorPool(Limits()), store=store, access=access)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, auth=USERS)
    clients = {name: Client(demo.local_url, auth=(name, pw), verbose=False) for name, pw in USERS}
    try:
        yield SimpleTeam(demo, store, clients, tmp)
    finally:
        demo.close()
        store.close()


class SimpleTeam:
    def __init__(self, demo, store, clients, tmp) -> None:
        self.demo, self.store, self.c, self.tmp = demo, store, clients, tmp
        self.given: dict[int, dict[str, str]] = defaultdict(dict)  # item -> annotator -> label we submitted
        self.source: dict[int, str] = {}


def test_each_role_is_refused_what_it_may_not_do(team):
    c, folder = team.c, labelled_folder(team.tmp / "refused", ROWS[:1])
    job = (AV, "team", "", 0, "local", "", 1, 1)
    for who in ("ann", "rita"):
        with pytest.raises(AppError, match=f"Only an admin may import a queue; {who} is"):
            c[who].predict(str(folder), "team", "file", "", 2, 0.0, api_name="/import_queue")
        with pytest.raises(AppError, match="Only an admin may set a queue's overlap"):
            c[who].predict("team", 3, api_name="/configure_queue")
        with pytest.raises(AppError, match="Only an admin may start a job"):
            c[who].predict(*job, api_name="/start_job")
    for api, args in (("/review_items", ("team", "disagree")), ("/resolve_item", (1, "7", "", "team")),
                      ("/item_history", (1, "team"))):  # fmt: skip
        with pytest.raises(AppError, match="Only a reviewer may .*; bob is annotator"):
            c["bob"].predict(*args, api_name=api)
    assert team.store.counts()["queues"] == 0  # nothing was imported


def test_bad_team_inputs_are_refused_in_words_and_change_nothing(team):
    c, folder = team.c, labelled_folder(team.tmp / "bad", ROWS[:1])
    for overlap in (0, 51, "two", 1.5):
        with pytest.raises(AppError, match="overlap must be a whole number from 1 to 50"):
            c["adam"].predict(str(folder), "team", "file", "", overlap, 0.0, api_name="/import_queue")
    with pytest.raises(AppError, match="gold must be a number from 0 to 1"):
        c["adam"].predict(str(folder), "team", "file", "", 2, 2, api_name="/import_queue")
    with pytest.raises(AppError, match="give overlap"):
        c["adam"].predict("team", None, api_name="/configure_queue")
    with pytest.raises(AppError, match="no queue named 'nope'"):
        c["adam"].predict("nope", 2, api_name="/configure_queue")
    with pytest.raises(AppError, match="which is one of disagree, model, all"):
        c["rita"].predict("team", "everything", api_name="/review_items")
    with pytest.raises(AppError, match="item_id must be the id of a queue item"):
        c["rita"].predict("x", "7", "", "team", api_name="/resolve_item")
    assert team.store.counts()["queues"] == 0 and c["rita"].predict("nope", "all", api_name="/review_items") == []


def test_overlap_two_gives_each_item_two_labels_from_two_people_and_hides_the_others(team):
    c = team.c
    done = c["adam"].predict(str(labelled_folder(team.tmp / "data", ROWS)), "team", "file", "", 2, 0.0,
                             api_name="/import_queue")  # fmt: skip
    assert (done["added"], done["total"]) == (6, 6)
    gold = c["adam"].predict(str(labelled_folder(team.tmp / "gold", GOLD)), "team", "file", "", None, 1.0,
                             api_name="/import_queue")  # fmt: skip
    assert (gold["added"], gold["total"]) == (2, 8)
    seen: dict[str, list[int]] = defaultdict(list)
    while True:
        moved = False
        for who in ANNOTATORS:
            item = c[who].predict("team", api_name="/next_item")
            if item is None:
                continue
            moved = True
            assert item["id"] not in seen[who], f"{who} was handed item {item['id']} again"
            assert item["given_label"] is None  # a queue with gold items shows no dataset label
            payload = json.dumps(item)
            for other in team.given[item["id"]]:  # someone labelled it already
                assert f'"{other}"' not in payload and f"note of {other}" not in payload
            assert {row[1] for row in recent(team.store, who=who)} <= {who}  # the recent table: its own only
            seen[who].append(item["id"])
            team.source[item["id"]] = item["source_id"]
            label = label_of(who, item["source_id"])
            c[who].predict(item["id"], label, {}, f"note of {who}", "team", api_name="/submit_item")
            team.given[item["id"]][who] = label
        if not moved:
            break
    with team.store.transaction() as conn:
        rows = conn.execute(sa.select(schema.annotations.c.item_id, schema.annotations.c.annotator)).all()
    by_item = defaultdict(list)
    for item_id, who in rows:
        by_item[item_id].append(who)
    assert len(by_item) == 8 and all(len(w) == 2 and len(set(w)) == 2 for w in by_item.values()), by_item
    stats = c["ann"].predict("team", api_name="/annotation_stats")
    assert (stats["total"], stats["labelled"], stats["overlap"], stats["labels_given"]) == (8, 8, 2, 16)
    assert sum(stats["annotators"].values()) == 16


def test_agreement_equals_the_reference_and_gold_accuracy_is_per_annotator(team):
    assert team.given, "runs after the overlap test"
    units = list(team.given.values())
    data = np.full((3, len(units)), np.nan)
    for j, unit in enumerate(units):
        for who, label in unit.items():
            data[ANNOTATORS.index(who), j] = int(label)
    alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    kappa, _ = fleiss_kappa([list(u.values()) for u in units])
    report = team.c["rita"].predict("team", api_name="/annotation_stats")["agreement"]
    assert report["items"] == 8 and report["fleiss_items"] == 8 and report["raters_per_item"] == 2
    assert report["krippendorff_alpha"] == pytest.approx(round(alpha, 4), abs=1e-9) and alpha < 1
    assert report["fleiss_kappa"] == pytest.approx(round(kappa, 4), abs=1e-9)
    metrics = pytest.importorskip("sklearn.metrics")
    for pair in report["pairs"]:
        x, y = pair["annotators"]
        common = [(u[x], u[y]) for u in units if x in u and y in u]
        assert pair["items"] == len(common)
        if pair["cohen_kappa"] is not None:
            expected = metrics.cohen_kappa_score([a for a, _ in common], [b for _, b in common])
            assert pair["cohen_kappa"] == pytest.approx(round(expected, 4), abs=1e-9)
    gold = {item: TRUE[sid] for item, sid in team.source.items() if sid.startswith("g")}
    assert len(gold) == 2 and report["gold_items"] == 2
    for who in ANNOTATORS:
        mine = [(team.given[i][who], known) for i, known in gold.items() if who in team.given[i]]
        row = report["annotators"][who]
        assert row["gold_items"] == len(mine)
        if mine:
            assert row["gold_accuracy"] == round(sum(a == b for a, b in mine) / len(mine), 4)
    as_annotator = team.c["bob"].predict("team", api_name="/annotation_stats")["agreement"]
    assert "gold_items" not in as_annotator and "gold_accuracy" not in as_annotator["annotators"]["bob"]


def test_a_reviewer_resolves_export_uses_it_and_the_history_keeps_every_change(team):
    assert team.given, "runs after the overlap test"
    rita = team.c["rita"]
    disagree = {i for i, u in team.given.items() if len(set(u.values())) > 1}
    assert disagree, "the table of mistakes makes some items disagree"
    items = rita.predict("team", "disagree", api_name="/review_items")
    assert {it["item_id"] for it in items} == disagree
    first = min(disagree)
    shown = next(it for it in items if it["item_id"] == first)
    assert {a["annotator"]: a["label"] for a in shown["annotations"]} == team.given[first]
    assert all(a["note"] == f"note of {a['annotator']}" for a in shown["annotations"])
    assert "fused" in shown["predicted"] and shown["resolution"] is None
    truth = TRUE[team.source[first]]
    r1 = rita.predict(first, "9", "first look", "team", api_name="/resolve_item")
    r2 = rita.predict(first, truth, "listened again", "team", api_name="/resolve_item")
    assert (r1["before"], r1["label"], r2["before"], r2["label"]) == (None, "9", "9", truth)
    with pytest.raises(AppError, match="unknown label 'cat'"):
        rita.predict(first, "cat", "", "team", api_name="/resolve_item")
    events = rita.predict(first, "team", api_name="/item_history")
    assert [e["what"] for e in events] == ["label", "label", "resolve", "resolve"]
    assert [(e["who"], e["before"], e["after"]) for e in events[2:]] == [("rita", None, "9"), ("rita", "9", truth)]
    out = team.tmp / "export"
    result = export(team.store, out, queue="team")
    lines = {s.id: s for s in load_dataset(out).samples}
    assert r2["id"] in lines and lines[r2["id"]].label == truth and lines[r2["id"]].meta["resolved_by"] == "rita"
    assert sorted(result.unresolved) == sorted(disagree - {first})  # disagreements nobody resolved: left out
    assert len(lines) == 8 - len(disagree) + 1


def test_the_tabs_progress_line_and_panels_follow_the_roles(team):
    """The Annotate tab's own events (private endpoints), called as the app calls them."""
    from types import SimpleNamespace

    from ui import review as review_ui
    from ui.annotate import stats_line
    from ume_mma.annotate import AnnotationQueue

    assert team.given, "runs after the overlap test"
    line = stats_line(AnnotationQueue(team.store, "team"))
    assert line.startswith("**8 of 8 done** in `team` (16 of 16 labels given, 2 annotators per item)")
    access = Access("login", roles=ROLES, admins=frozenset(), reviewers=frozenset())
    fns = review_ui.handlers(team.store, access)
    as_user = {name: SimpleNamespace(username=name) for name, _ in USERS}
    report = team.c["rita"].predict("team", api_name="/annotation_stats")["agreement"]
    summary, people, labels, pairs = fns.agreement_ui("team", as_user["bob"], None)
    assert f"Krippendorff's alpha **{report['krippendorff_alpha']}** on 8 items" in summary
    assert {row[0] for row in people} == set(ANNOTATORS) and all(row[5:] == ["", ""] for row in people)
    _, people, _, _ = fns.agreement_ui("team", as_user["rita"], None)
    assert [row[5] for row in people] == [report["annotators"][n]["gold_items"] for n in sorted(ANNOTATORS)]
    with pytest.raises(gr.Error, match="Only a reviewer may read everyone's labels; cy is annotator"):
        fns.review_ui("team", "disagree", as_user["cy"], None)
    rows, label_choices, first = fns.review_ui("team", "disagree", as_user["rita"], None)
    disagree = {i for i, u in team.given.items() if len(set(u.values())) > 1}
    assert {r[0] for r in rows} == disagree and first == rows[0][0]
    assert "9" in label_choices["choices"] or ("9", "9") in label_choices["choices"]
    status, _, history = fns.resolve_ui("team", first, "7", "", "disagree", as_user["adam"], None)  # an admin may too
    assert "resolved as **7** by adam" in status and history[-1][1:5] == ["adam", "resolve", history[-2][4], "7"]


def labelled_team_app(tmp: Path, access: Access, auth=None):
    """An app over queue "team" (ROWS, overlap 2, predicted by av-digits) that ann, bob and cy have labelled
    in turns through the library (with MISTAKES): for the browser test and the docs' screenshots."""
    from ume_mma.annotate import AnnotationQueue, import_dataset, predict_queue

    store = open_store(tmp / "team.db")
    pool = app.PredictorPool(Limits())
    import_dataset(store, labelled_folder(tmp / "data", ROWS), "team", order="file", overlap=2)
    predict_queue(store, pool.get(AV).predictor, "team", show_progress=False)
    queue = AnnotationQueue(store, "team")
    for who in ANNOTATORS * 4:
        item = queue.next_item(who)
        if item is not None:
            queue.submit(item.id, label_of(who, item.source_id), who, note=f"note of {who}")
    demo = app.build_demo(AV, pool=pool, store=store, access=access)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, auth=auth)
    return demo, store
