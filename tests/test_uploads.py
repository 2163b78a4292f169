"""The upload folder stays bounded: oldest files go first, young files and other folders are never touched."""

from __future__ import annotations

import os
from pathlib import Path

from ui.uploads import sweep


def put(folder: Path, name: str, size: int, age_s: float, now: float) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_sweep_removes_oldest_until_under_the_cap(tmp_path):
    now = 1_000_000.0
    old = [put(tmp_path, f"{i}/clip.mp4", 1000, 3600 - i, now) for i in range(5)]  # 0 is the oldest
    young = put(tmp_path, "new/upload.wav", 5000, 5, now)
    empty = put(tmp_path, "tmp/empty", 0, 120, now)
    for folder in tmp_path.iterdir():
        os.utime(folder, (now - 600, now - 600))
    result = sweep(tmp_path, max_bytes=7000, min_age_s=60, now=now)
    assert result.bytes_before == 10_000 and result.bytes_after == 7000
    assert [p.exists() for p in old] == [False, False, False, True, True]
    assert young.exists() and not empty.exists()
    assert not (tmp_path / "0").exists() and not (tmp_path / "tmp").exists()  # emptied folders are removed


def test_young_files_stay_even_over_the_cap(tmp_path):
    now = 1_000_000.0
    files = [put(tmp_path, f"f{i}", 1000, 10, now) for i in range(3)]
    result = sweep(tmp_path, max_bytes=0, min_age_s=60, now=now)
    assert result.removed == 0 and all(p.exists() for p in files)


def test_a_missing_folder_is_no_error(tmp_path):
    assert sweep(tmp_path / "nothing", max_bytes=0).bytes_after == 0
