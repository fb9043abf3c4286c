import os
import stat

import pytest

from edgesam_edge.atomic import atomic_path, write_text_atomic


def test_a_clean_exit_replaces_the_file_readable_by_all(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_an_error_keeps_what_was_there_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("precious")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_the_temporary_file_keeps_the_suffix_and_the_folder(tmp_path):
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        assert not target.exists()
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


def test_a_missing_folder_raises_and_creates_nothing(tmp_path):
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "no" / "such.json", "x")
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """SD cards lose renamed-but-unflushed files on power loss (issue 19, item 14)."""
    target = tmp_path / "manifest.json"
    target.write_text("old")
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, target.read_text()))  # what the target held when this was synced
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text_atomic(target, "new")
    assert len(synced) == 2
    (tmp_file, seen_before), (folder, seen_after) = synced
    assert tmp_file != str(target) and tmp_file.startswith(str(tmp_path / ".manifest.json.")) and seen_before == "old"
    assert folder == str(tmp_path) and seen_after == "new"
