import numpy as np
import pytest

from edgesam_edge.camera import rle
from edgesam_edge.errors import EdgeSamError


def test_known_values():
    m = np.array([[0, 1], [1, 1]], bool)  # column-major: 0, 1, 1, 1
    assert rle.runs(m) == [1, 3]
    assert rle.encode(np.zeros((2, 2), bool)) == {"size": [2, 2], "counts": "4"}
    assert rle.runs(np.ones((2, 3), bool)) == [0, 6]
    # later runs are stored as differences to the run two before (COCO's scheme), incl. negative ones
    counts = [3, 5, 40, 2, 1, 70]
    s = rle.counts_to_string(counts)
    assert rle.string_to_counts(s) == counts
    assert rle.counts_to_string([0]) == "0"


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_random_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, 2)
    m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    enc = rle.encode(m)
    assert enc["size"] == [int(h), int(w)]
    back = rle.decode(enc)
    assert back.dtype == bool and np.array_equal(back, m)
    assert rle.area(enc) == int(m.sum())
    assert np.array_equal(rle.decode({"size": enc["size"], "counts": rle.runs(m)}), m)


def test_round_trip_large_runs():
    m = np.zeros((480, 640), bool)
    m[100:300, 50:600] = True
    assert np.array_equal(rle.decode(rle.encode(m)), m)


def test_bad_rle():
    with pytest.raises(EdgeSamError, match="sum"):
        rle.decode({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(EdgeSamError, match="COCO RLE"):
        rle.decode({"counts": "4"})
    with pytest.raises(EdgeSamError):
        rle.encode(np.zeros((2, 2, 2), bool))


def test_matches_pycocotools_golden_string():
    # counts produced by pycocotools.mask.encode (2.0.11) for this mask
    m = np.zeros((40, 60), bool)
    m[5:30, 10:50] = True
    m[12:18, 20:25] = False
    m[35:38, 0:3] = True
    golden = ("S13U1000j7f0`G000000000000000000^OG59KG59KG59KG59KG59=0000000000000000000000000000000000000000000000"
              "00[<")
    assert rle.encode(m)["counts"] == golden
    assert np.array_equal(rle.decode({"size": [40, 60], "counts": golden}), m)
