"""The camera loop's contract with a model (PredictorLike) and its weight-dependent policy."""

import json

import numpy as np

from edgesam_edge.camera.oracle import GroundTruthOracle
from edgesam_edge.camera.policy import DEMO_REPROMPT_NEGATIVES, DEMO_REPROMPT_POINTS, is_demo_bundle
from edgesam_edge.camera.protocols import PredictorLike
from edgesam_edge.camera.tracker import DEFAULT_MAX_POINTS, TRACKED, Tracker
from edgesam_edge.engines.base import Decoder, Encoder
from edgesam_edge.paths import DATA_DIR
from edgesam_edge.predictor import Predictor

from .helpers import BoxPredictor

S = 64  # input side of the fake model


class FakeEncoder(Encoder):
    """``(1, 3, S, S)`` -> a zero ``(1, 256, S/16, S/16)`` embedding."""

    input_size = S

    def __call__(self, image):
        assert image.shape == (1, 3, S, S) and image.dtype == np.float32
        return np.zeros((1, 256, S // 16, S // 16), np.float32)


class FakeDecoder(Decoder):
    """Every prompt -> score 0.9 and a mask of the top-left quarter of the S x S input."""

    def __call__(self, image_embeddings, point_coords, point_labels):
        b = point_coords.shape[0]
        masks = np.full((b, 4, S // 4, S // 4), -10.0, np.float32)
        masks[:, :, : S // 8, : S // 8] = 10.0
        return np.full((b, 4), 0.9, np.float32), masks


def test_predictor_and_oracle_are_predictor_like():
    predictor = Predictor(FakeEncoder(), FakeDecoder(), input_size=S)
    assert isinstance(predictor, PredictorLike)
    assert isinstance(GroundTruthOracle(), PredictorLike)
    assert isinstance(BoxPredictor(), PredictorLike)
    assert not isinstance(object(), PredictorLike)


def test_the_tracker_runs_on_a_predictor():
    """A real Predictor (fake engines) behind the tracker: a box prompt, then a re-prompt with box and points."""
    tracker = Tracker(Predictor(FakeEncoder(), FakeDecoder(), input_size=S))
    image = np.zeros((48, 64, 3), np.uint8)  # 48x64 -> the top-left quarter of the input is rows 0..31, cols 0..31
    tracker.add(box=(0, 0, 31, 31))
    (t,) = tracker.step(image, encode=True)
    assert t.state == TRACKED and t.mask.shape == (48, 64) and t.mask.dtype == bool
    assert t.mask[:28, :28].all() and not t.mask[36:, :].any() and not t.mask[:, 36:].any()
    (t,) = tracker.step(image, encode=True)  # re-prompted with the mask's box and points inside it
    assert t.state == TRACKED and t.mask[:28, :28].all() and not t.mask[36:, :].any()
    assert tracker.decoder_calls == 2


def test_demo_bundles_are_recognised_by_their_checkpoint():
    assert is_demo_bundle({"source": {"checkpoint": "edgesam_demo.safetensors"}})
    assert not is_demo_bundle({"source": {"checkpoint": "edge_sam_3x.pth"}})
    assert not is_demo_bundle({"source": None}) and not is_demo_bundle({})
    assert (DEMO_REPROMPT_POINTS, DEMO_REPROMPT_NEGATIVES) == (0, False) and DEFAULT_MAX_POINTS == 2


def test_the_shipped_demo_bundles_are_demo_bundles():
    manifests = sorted(DATA_DIR.glob("bundles/*/manifest.json"))
    assert manifests
    for m in manifests:
        assert is_demo_bundle(json.loads(m.read_text())), m
