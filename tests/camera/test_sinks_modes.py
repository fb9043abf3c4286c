"""Everything the package writes gets the mode a normal write gives: 0o666 / 0o777 less the umask (issue 22, item 2).

``mkstemp`` and ``mkdtemp`` make 0600 files and 0700 folders, which the user's other accounts and
services (a web server, a Samba share) cannot read; a fixed 0644 ignores a stricter umask.
"""

import os
import stat

import pytest

from edgesam_edge.atomic import atomic_path, file_mode, temp_path_beside, write_text_atomic
from edgesam_edge.bundle import staging_dir
from edgesam_edge.camera.loop import LiveLoop, Prompt
from edgesam_edge.camera.sinks import JsonlSink, VideoSink
from edgesam_edge.camera.source import open_source
from edgesam_edge.camera.tracker import Tracker

from .helpers import BoxPredictor


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_file_mode_is_what_a_plain_write_gives(tmp_path, umask):
    plain = tmp_path / "plain"
    plain.write_text("x")
    os.mkdir(tmp_path / "folder")
    assert file_mode() == mode_of(plain) == 0o666 & ~umask
    assert file_mode(directory=True) == mode_of(tmp_path / "folder") == 0o777 & ~umask


def test_atomic_writes_respect_the_umask(tmp_path, umask):
    write_text_atomic(tmp_path / "report.json", "{}")
    with atomic_path(tmp_path / "arrays.npz") as tmp:
        tmp.write_bytes(b"npz")
    assert mode_of(tmp_path / "report.json") == mode_of(tmp_path / "arrays.npz") == 0o666 & ~umask
    tmp = temp_path_beside(tmp_path / "clip.mp4")
    assert mode_of(tmp) == 0o666 & ~umask and tmp.name.startswith(".clip.mp4.") and tmp.suffix == ".mp4"


def test_sink_outputs_respect_the_umask(tmp_path, umask):
    jl, vid = tmp_path / "t.jsonl", tmp_path / "o.mp4"
    src = open_source("synthetic://?size=96x64&fps=200&objects=1&seed=3")
    LiveLoop(src, Tracker(BoxPredictor()), [JsonlSink(str(jl)), VideoSink(str(vid))], max_frames=5,
             prompts=[Prompt(box=(5, 5, 40, 40))]).run()
    assert mode_of(jl) == mode_of(vid) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "t.jsonl"]


def test_a_bundle_folder_respects_the_umask(tmp_path, umask):
    out = tmp_path / "bundle"
    with staging_dir(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert mode_of(out) == 0o777 & ~umask
    assert mode_of(out / "manifest.json") == 0o666 & ~umask
