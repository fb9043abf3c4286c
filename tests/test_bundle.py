"""Bundle folders: manifest checks, corruption, official folders, atomic output."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from edgesam_edge.bundle import MANIFEST, MAX_MANIFEST_BYTES, check_output_dir, load_bundle, staging_dir
from edgesam_edge.errors import BundleError, OutputExists


@pytest.fixture
def bundle_copy(tmp_path, small_bundle):
    d = tmp_path / "b"
    shutil.copytree(small_bundle, d)
    return d


def _edit_manifest(d, **changes):
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    (d / "manifest.json").write_text(json.dumps(m))


def test_loads_and_summarises(small_bundle):
    b = load_bundle(small_bundle)
    assert b.format == "onnx" and b.input_size == 256 and b.score == "iou"
    assert b.summary()["precision"] == "fp32"


@pytest.mark.parametrize("change, match", [
    ({"format_version": 99}, "format_version 99"),
    ({"format": "caffe"}, "unknown format"),
    ({"precision": "int4"}, "unknown precision"),
    ({"input_size": 1000}, "multiple of 64"),
    ({"score": "area"}, "score"),
    ({"artifacts": {"encoder": {"path": "encoder.onnx"}}}, "artifacts.encoder and artifacts.decoder"),
])
def test_bad_manifest(bundle_copy, change, match):
    _edit_manifest(bundle_copy, **change)
    with pytest.raises(BundleError, match=match) as err:
        load_bundle(bundle_copy)
    assert "\n" not in str(err.value)


def test_missing_artifact(bundle_copy):
    (bundle_copy / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="decoder artifact 'decoder.onnx' is missing"):
        load_bundle(bundle_copy)


def test_corrupt_artifact_is_detected(bundle_copy):
    data = (bundle_copy / "encoder.onnx").read_bytes()
    (bundle_copy / "encoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bundle_copy)


def test_an_artifact_without_sha256_is_refused(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    del m["artifacts"]["encoder"]["sha256"]
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="encoder artifact 'encoder.onnx' has no sha256") as err:
        load_bundle(bundle_copy)
    assert "\n" not in str(err.value)
    m["artifacts"]["encoder"]["sha256"] = ""
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="has no sha256"):
        load_bundle(bundle_copy)


def test_truncated_onnx_fails_on_open_past_the_checksum(bundle_copy):
    from edgesam_edge.engines.base import get_backend

    data = (bundle_copy / "encoder.onnx").read_bytes()
    (bundle_copy / "encoder.onnx").write_bytes(data[:1000])
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="ONNX Runtime cannot load it .*is the file truncated"):  # sha256 skipped
        get_backend("onnxruntime")().open(load_bundle(bundle_copy, verify=False))


def test_unreadable_manifest(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a folder"):
        load_bundle(tmp_path / "file")
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)


def test_staging_dir_is_atomic(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staging_dir(dest) as tmp:
            (tmp / "half.onnx").write_text("x")
            raise RuntimeError("boom")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with staging_dir(dest) as tmp:
        _fake_bundle(tmp, "1")
    assert (dest / "a").read_text() == "1"
    with pytest.raises(OutputExists):
        check_output_dir(dest)
    with staging_dir(dest, force=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- --force and the user's folders (issue 19, item 10) ----------------------------------------------

def _fake_bundle(folder, text="old"):
    (folder / "a").write_text(text)
    (folder / MANIFEST).write_text(json.dumps({"format_version": 1, "artifacts": {}}))


def test_force_refuses_a_folder_that_is_not_a_bundle_and_leaves_it_untouched(tmp_path):
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "notes.txt").write_text("a stranger's notes")
    (projects / "manifest.json").write_text('{"name": "my web app"}')  # a manifest, but not a bundle's
    with pytest.raises(OutputExists, match="holds no bundle manifest.json") as err:
        with staging_dir(projects, force=True) as tmp:
            (tmp / "encoder.onnx").write_text("x")
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in projects.iterdir()) == ["manifest.json", "notes.txt"]
    assert (projects / "notes.txt").read_text() == "a stranger's notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["projects"]
    with pytest.raises(OutputExists, match="symbolic link"):
        (tmp_path / "link").symlink_to(projects)
        check_output_dir(tmp_path / "link", force=True)


def test_force_replaces_an_empty_folder_or_a_bundle(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with staging_dir(empty, force=False) as tmp:
        _fake_bundle(tmp, "new")
    assert (empty / "a").read_text() == "new"
    with staging_dir(empty, force=True) as tmp:
        (tmp / "b").write_text("newer")
    assert sorted(p.name for p in empty.iterdir()) == ["b"]


def test_a_folder_filled_during_the_build_is_not_replaced(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(OutputExists, match="holds no bundle"):
        with staging_dir(dest, force=True) as tmp:
            (tmp / "a").write_text("new")
            dest.mkdir()
            (dest / "photo.jpg").write_text("someone saved this meanwhile")
    assert sorted(p.name for p in dest.iterdir()) == ["photo.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_old_bundle_survives_a_failing_second_rename(tmp_path, monkeypatch):
    dest = tmp_path / "bundle"
    dest.mkdir()
    _fake_bundle(dest, "old")
    real_rename = os.rename

    def failing_rename(src, dst):
        if str(dst) == str(dest) and ".tmp-" in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="cross-device"):
        with staging_dir(dest, force=True) as tmp:
            (tmp / "a").write_text("new")
    assert (dest / "a").read_text() == "old" and (dest / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no backup, no staging folder left


def test_export_force_onto_a_strangers_folder_is_refused(tmp_path, capsys):
    from edgesam_edge.cli import main

    home = tmp_path / "projects"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    assert main(["export", "random", "-o", str(home), "--input-size", "128", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "holds no bundle manifest.json" in err and "\n" not in err
    assert [p.name for p in home.iterdir()] == ["notes.txt"] and (home / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["projects"]


# -- artifact paths from a manifest (issue 19, item 11) ----------------------------------------------

@pytest.mark.parametrize("where", ["../outside.onnx", "ABSOLUTE", "sub/../../outside.onnx"])
def test_an_artifact_path_that_leaves_the_bundle_is_refused(tmp_path, bundle_copy, where):
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(bundle_copy / "encoder.onnx", outside)
    rel = str(outside) if where == "ABSOLUTE" else where
    m = json.loads((bundle_copy / MANIFEST).read_text())
    m["artifacts"]["encoder"]["path"] = rel  # same bytes, same sha256: only the path is wrong
    (bundle_copy / MANIFEST).write_text(json.dumps(m))
    for verify in (True, False):
        with pytest.raises(BundleError, match="leaves the bundle folder") as err:
            load_bundle(bundle_copy, verify=verify)
        assert "\n" not in str(err.value)


def test_a_link_out_of_the_bundle_is_refused(tmp_path, bundle_copy):
    outside = tmp_path / "outside.onnx"
    (bundle_copy / "encoder.onnx").rename(outside)
    (bundle_copy / "encoder.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load_bundle(bundle_copy)


def test_calibration_never_copies_an_escaping_artifact(tmp_path, bundle_copy, capsys):
    from edgesam_edge.cli import main

    outside = tmp_path / "secret.onnx"
    shutil.copyfile(bundle_copy / "decoder.onnx", outside)
    m = json.loads((bundle_copy / MANIFEST).read_text())
    m["artifacts"]["decoder"]["path"] = "../secret.onnx"
    (bundle_copy / MANIFEST).write_text(json.dumps(m))
    out = tmp_path / "int8"
    assert main(["calibrate", str(bundle_copy), "-o", str(out), "--images", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "leaves the bundle folder" in err
    assert not out.exists()


def test_official_folders_need_no_manifest_checksums(tmp_path, bundle_copy):
    folder = tmp_path / "official"
    folder.mkdir()
    shutil.copyfile(bundle_copy / "encoder.onnx", folder / "edge_sam_3x_encoder.onnx")
    shutil.copyfile(bundle_copy / "decoder.onnx", folder / "edge_sam_3x_decoder.onnx")
    b = load_bundle(folder)
    assert b.official and b.artifact("encoder") == folder / "edge_sam_3x_encoder.onnx"


def test_an_oversized_or_deeply_nested_manifest_is_one_line(bundle_copy):
    (bundle_copy / MANIFEST).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(bundle_copy)
    with open(bundle_copy / MANIFEST, "wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)
    with pytest.raises(BundleError, match="unreadable .* bytes"):
        load_bundle(bundle_copy)
