"""The one accuracy table (evaluation output, model card, results) and its uni-modal cells."""

import pytest

from ume_mma.report import accuracy_table, metrics_table, model_accuracy

FUSED = {"full": 0.9, "without_audio": 0.8, "without_image": 0.5, "missing_rate_0.5": 0.75, "missing_rate_0.25": 0.8}
IMAGE = {"full": 0.8}


def test_model_accuracy_of_unimodal_rows():
    assert model_accuracy("mma", FUSED, "without_image") == 0.5
    assert model_accuracy("image-only", IMAGE, "without_audio") == 0.8  # another modality removed: unaffected
    assert model_accuracy("image-only", IMAGE, "without_image") is None  # its own: no input left
    assert model_accuracy("image-only", IMAGE, "missing_rate_0.5") is None
    assert model_accuracy("mma", IMAGE, "without_audio") is None  # only uni-modal rows are filled in


def test_accuracy_table_single_runs():
    table = accuracy_table(["model"], [(["mma"], "mma", [FUSED]), (["image-only"], "image-only", [IMAGE])])
    assert table.splitlines() == [
        "| model | full | without audio | without image | MR25 | MR50 |",
        "|---|---|---|---|---|---|",
        "| mma | 90.0 | 80.0 | 50.0 | 80.0 | 75.0 |",
        "| image-only | 80.0 | 80.0 | - | - | - |",
    ]


def test_accuracy_table_mean_and_std_over_runs():
    runs = [{"full": 0.5}, {"full": 0.7}]
    table = accuracy_table(["encoders", "model"], [(["scratch", "ume"], "ume", runs)], ["full"], spread=True)
    assert table.splitlines()[-1] == "| scratch | ume | 60.0 ± 14.1 |"
    one = accuracy_table(["model"], [(["ume"], "ume", runs[:1])], spread=True)
    assert one.splitlines()[-1] == "| ume | 50.0 ± 0.0 |"


def test_metrics_table_is_the_fused_row():
    text = metrics_table({"n": 4, "accuracy": FUSED, "branches": {"image": 1.0}})
    assert "| fused | 90.0 | 80.0 | 50.0 | 80.0 | 75.0 |" in text and "| image | 100.0 |" in text
    assert text.endswith("4 samples.")


@pytest.mark.parametrize("rows", [[], [(["x"], "x", [])]])
def test_accuracy_table_without_values(rows):
    assert accuracy_table(["model"], rows).splitlines()[:2] == ["| model |", "|---|"]
