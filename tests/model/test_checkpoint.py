"""Checkpoints load safely, and bad ones fail with one clear line."""

from __future__ import annotations

import pickle

import pytest

from edgesam_edge.errors import CheckpointError, EdgeSamError

torch = pytest.importorskip("torch", reason="checkpoint loading needs torch (extra 'export')")


def test_registry_loads_official_layout(reference_checkpoint):
    from edgesam_edge.model import sam_model_registry

    sam = sam_model_registry["edge_sam"](checkpoint=str(reference_checkpoint))
    assert not sam.training
    sd = torch.load(str(reference_checkpoint), weights_only=True)
    assert len(sd) == 821
    own = sam.state_dict()
    assert set(own) == set(sd)
    assert torch.equal(own["mask_decoder.iou_token.weight"], sd["mask_decoder.iou_token.weight"])


def test_wrong_keys_are_listed(tmp_path, reference_checkpoint):
    from edgesam_edge.model import sam_model_registry

    sd = torch.load(str(reference_checkpoint), weights_only=True)
    del sd["mask_decoder.iou_token.weight"]
    sd["something.else"] = torch.zeros(1)
    bad = tmp_path / "other.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError) as err:
        sam_model_registry["edge_sam"](checkpoint=str(bad))
    msg = str(err.value)
    assert "\n" not in msg
    assert "mask_decoder.iou_token.weight" in msg and "something.else" in msg


def test_checkpoint_of_another_model(tmp_path):
    from edgesam_edge.model import sam_model_registry

    other = tmp_path / "resnet.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(CheckpointError, match="not an EdgeSAM checkpoint"):
        sam_model_registry["edge_sam"](checkpoint=str(other))


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    from edgesam_edge.model import sam_model_registry

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"x": _Evil(str(marker))}, f)
    with pytest.raises(CheckpointError, match="refused"):
        sam_model_registry["edge_sam"](checkpoint=str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("content", [None, b"", b"not a checkpoint at all"])
def test_missing_or_garbage_checkpoint(tmp_path, content):
    from edgesam_edge.model import sam_model_registry

    path = tmp_path / "ckpt.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError):
        sam_model_registry["edge_sam"](checkpoint=str(path))


def test_bad_build_arguments():
    from edgesam_edge.model import sam_model_registry

    with pytest.raises(EdgeSamError, match="upsample_mode"):
        sam_model_registry["edge_sam"](upsample_mode="nearest")
    with pytest.raises(EdgeSamError, match="multiple of 64"):
        sam_model_registry["edge_sam"](img_size=1000)
