import numpy as np
import pytest

from edgesam_edge.camera.flow import mask_box
from edgesam_edge.camera.oracle import GroundTruthOracle
from edgesam_edge.camera.frame import Frame
from edgesam_edge.camera.synthetic import SyntheticScene
from edgesam_edge.camera.tracker import OCCLUDED, PENDING, TRACKED, Tracker
from edgesam_edge.errors import EdgeSamError, InvalidPrompt


def iou(a, b):
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


class Clip:
    """Frames of a synthetic scene, shown to an oracle as they are made."""

    def __init__(self, motion="medium", objects=3, seed=0, size=(320, 240), hide=None):
        self.scene = SyntheticScene(size[0], size[1], objects, seed, motion)
        self.oracle = GroundTruthOracle()
        self.hide = hide or {}  # frame range -> ids the oracle cannot see (fully occluded)
        self.frames = {}

    def frame(self, i):
        if i not in self.frames:
            img, gt = self.scene.render(i)
            seen = dict(gt)
            for (a, b), ids in self.hide.items():
                if a <= i < b:
                    for k in ids:
                        seen[k] = np.zeros_like(gt[k])
            self.oracle.observe(img, seen)
            self.frames[i] = Frame(img, i, 0.0, gt)
        return self.frames[i]

    def boxes(self, i):
        out = []
        for k, m in self.frame(i).gt.items():
            x0, y0, x1, y1 = mask_box(m)
            out.append((k, (x0, y0, x1 - 1, y1 - 1)))
        return out


def start(clip, ids=None, **options):
    tracker = Tracker(clip.oracle, **options)
    for k, b in clip.boxes(0):
        if ids is None or k in ids:
            tracker.add(box=b)
    tracks = tracker.step(clip.frame(0), encode=True)
    assert [t.state for t in tracks] == [TRACKED] * len(tracks)
    return tracker


def record_predict_calls(clip):
    """The keyword arguments of every ``predict`` call the oracle gets from now on (a list that grows)."""
    calls = []
    real = clip.oracle.predict

    def spy(**kw):
        calls.append(kw)
        return real(**kw)

    clip.oracle.predict = spy
    return calls


def test_flow_carries_masks_between_encodings():
    clip = Clip()
    tracker = start(clip)
    for i in range(1, 21):
        tracks = tracker.step(clip.frame(i))
    gt = clip.frame(20).gt
    flowed = [iou(t.mask, gt[t.id]) for t in tracks]
    frozen = [iou(clip.frame(0).gt[k], gt[k]) for k in gt]  # what a tracker without flow would show
    assert all(t.state == TRACKED and t.age == 20 for t in tracks)
    assert np.mean(flowed) > 0.8
    assert np.mean(flowed) > np.mean(frozen) + 0.2


def test_refine_with_an_old_embedding_is_warped_to_now():
    clip = Clip()
    tracker = start(clip)
    for i in range(1, 16):
        tracker.step(clip.frame(i))
    emb = clip.oracle.encode(clip.frame(6).image)
    assert tracker.refine(emb, 6) == 3
    tracks = tracker.tracks()
    for t in tracks:
        now, then = clip.frame(15).gt[t.id], clip.frame(6).gt[t.id]
        assert t.age == 9
        assert iou(t.mask, now) > 0.85
        assert iou(t.mask, now) > iou(t.mask, then)  # moved to frame 15, not left at frame 6


def test_reprompt_uses_box_and_interior_points_of_the_mask_at_that_frame():
    clip = Clip()
    tracker = start(clip, ids=[2])
    calls = record_predict_calls(clip)
    for i in range(1, 5):
        tracker.step(clip.frame(i))
    mask_at_4 = tracker.tracks()[0].mask
    for i in range(5, 9):
        tracker.step(clip.frame(i))
    tracker.refine(clip.oracle.encode(clip.frame(4).image), 4)
    kw = calls[-1]
    x0, y0, x1, y1 = mask_box(mask_at_4)
    assert np.allclose(kw["box"][0], [x0, y0, x1 - 1, y1 - 1])
    pos = kw["point_coords"][0][kw["point_labels"][0] == 1]
    assert len(pos) >= 1
    for x, y in pos:
        assert mask_at_4[int(y), int(x)]  # positive points lie inside the mask


def test_box_only_reprompts():
    """``max_points=0, negatives=False``: the box of the mask alone (for a model trained on boxes or points)."""
    clip = Clip()
    tracker = start(clip, max_points=0, negatives=False)
    calls = record_predict_calls(clip)
    for i in range(1, 4):
        tracker.step(clip.frame(i))
    tracker.refine(clip.oracle.encode(clip.frame(3).image), 3)
    kw = calls[-1]
    assert kw["box"].shape == (len(tracker), 4) and "point_coords" not in kw
    assert all(t.state == TRACKED for t in tracker.tracks())


def test_all_objects_in_one_decoder_call():
    clip = Clip(objects=4)
    tracker = start(clip)
    for i in range(1, 6):
        tracker.step(clip.frame(i))
    before_o, before_t = clip.oracle.predict_calls, tracker.decoder_calls
    assert tracker.refine(clip.oracle.encode(clip.frame(5).image), 5) == 4
    assert clip.oracle.predict_calls - before_o == 1
    assert tracker.decoder_calls - before_t == 1
    for t in tracker.tracks():  # each object got its own answer back
        assert iou(t.mask, clip.frame(5).gt[t.id]) > 0.95


def test_occluded_when_the_object_vanishes_and_found_again_when_it_returns():
    clip = Clip(motion="slow", hide={(8, 20): [2]})
    tracker = start(clip)
    for i in range(1, 30):
        tracker.step(clip.frame(i))
        if i in (10, 24):
            tracker.refine(clip.oracle.encode(clip.frame(i).image), i)
            states = {t.id: t.state for t in tracker.tracks()}
            if i == 10:
                assert states == {1: TRACKED, 2: OCCLUDED, 3: TRACKED}
                hidden = [t for t in tracker.tracks() if t.id == 2][0]
                assert not hidden.mask.any()
                # its box is where its motion model puts it: about where it was last seen
                x0, y0, x1, y1 = mask_box(clip.frame(10).gt[2] | clip.frame(7).gt[2])
                bx0, by0, bx1, by1 = hidden.box
                assert bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1
            else:
                assert states == {1: TRACKED, 2: TRACKED, 3: TRACKED}
    t2 = [t for t in tracker.tracks() if t.id == 2][0]
    assert iou(t2.mask, clip.frame(29).gt[2]) > 0.8


def test_occluded_when_score_collapses():
    clip = Clip(objects=1)
    tracker = start(clip)
    tracker.step(clip.frame(1))
    real = clip.oracle.predict

    def low_score(**kw):
        m, s, lo = real(**kw)
        return m, s * 0.1, lo

    clip.oracle.predict = low_score
    tracker.refine(clip.oracle.encode(clip.frame(1).image), 1)
    t = tracker.tracks()[0]
    assert t.state == OCCLUDED and not t.mask.any()


def test_points_only_object_and_waiting_for_a_newer_embedding():
    clip = Clip(objects=1, motion="static")
    tracker = Tracker(clip.oracle)
    tracker.step(clip.frame(0))
    tracker.step(clip.frame(1))
    gt = clip.frame(1).gt[1]
    ys, xs = np.nonzero(gt)
    k = len(xs) // 2
    oid = tracker.add(points=[(xs[k], ys[k])])
    assert tracker.tracks()[0].state == PENDING
    tracker.step(clip.frame(2))
    # an embedding of a frame before the prompt existed cannot answer it
    assert tracker.refine(clip.oracle.encode(clip.frame(0).image), 0) == 0
    assert tracker.tracks()[0].state == PENDING
    assert tracker.refine(clip.oracle.encode(clip.frame(2).image), 2) == 1
    t = tracker.tracks()[0]
    assert t.id == oid and t.state == TRACKED and iou(t.mask, clip.frame(2).gt[1]) > 0.95


def test_add_remove_and_bad_prompts():
    clip = Clip(objects=1)
    tracker = Tracker(clip.oracle)
    tracker.step(clip.frame(0))
    a = tracker.add(box=(10, 10, 50, 50))
    b = tracker.add(points=[(20, 20), (30, 30)], labels=[1, 0])
    assert (a, b) == (1, 2) and tracker.ids == [1, 2]
    tracker.remove(a)
    assert tracker.ids == [2]
    with pytest.raises(InvalidPrompt, match="outside the 320x240 frame"):
        tracker.add(points=[(400, 20)])
    with pytest.raises(InvalidPrompt, match="x1 <= x0"):
        tracker.add(box=(50, 10, 40, 20))
    with pytest.raises(InvalidPrompt, match="labels"):
        tracker.add(points=[(1, 1)], labels=[2])
    with pytest.raises(InvalidPrompt, match="no prompt"):
        tracker.add()
    with pytest.raises(InvalidPrompt, match="not tracked"):
        tracker.add(points=[(1, 1)], labels=[0], object_id=99)
    tracker.clear()
    assert tracker.tracks() == []


def test_history_is_bounded():
    clip = Clip(objects=2)
    tracker = Tracker(clip.oracle, history=10)
    for _, b in clip.boxes(0):
        tracker.add(box=b)
    tracker.step(clip.frame(0), encode=True)
    for i in range(1, 40):
        tracker.step(clip.frame(i))
    assert sorted(tracker.history_sizes) == [1, 2]
    assert all(n == 10 for n in tracker.history_sizes.values())
    # an embedding older than the history is skipped, not misapplied
    assert tracker.refine(clip.oracle.encode(clip.frame(5).image), 5) == 0


def answer_with(clip, change):
    """Make the oracle answer object ``k``'s prompt with ``change(k, gt)`` instead of its true mask."""
    real = clip.oracle.predict

    def fake(**kw):
        masks, scores, low = real(**kw)
        gt = kw["embedding"].gt
        masks = masks.copy()
        for i in range(masks.shape[0]):
            for k, m in gt.items():
                if m.any() and (masks[i, 0] == m).all():
                    masks[i] = change(k, gt)
        return masks, scores, low

    clip.oracle.predict = fake


def two_touching_objects():
    """A static clip whose objects 1 and 2 lie close (their boxes overlap) in frame 0."""
    for seed in range(40):
        clip = Clip(motion="static", objects=2, seed=seed)
        gt = clip.frame(0).gt
        a, b = mask_box(gt[1]), mask_box(gt[2])
        if a and b and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] and gt[1].sum() > 400 and gt[2].sum() > 400:
            return clip
    raise AssertionError("no seed with touching objects")


def test_an_answer_that_swallows_a_neighbour_is_cut_back_to_the_object():
    clip = two_touching_objects()
    tracker = start(clip, max_growth=0)
    answer_with(clip, lambda k, gt: gt[1] | gt[2] if k == 1 else gt[k])  # object 1's answer takes in object 2
    tracker.step(clip.frame(1))
    tracker.refine(clip.oracle.encode(clip.frame(1).image), 1)
    t1, t2 = tracker.tracks()
    gt = clip.frame(1).gt
    assert t1.state == TRACKED and t2.state == TRACKED
    assert not (t1.mask & t2.mask).any()
    assert iou(t1.mask, gt[1]) > 0.95 and iou(t2.mask, gt[2]) > 0.95


def test_an_answer_that_is_the_neighbour_hides_the_object():
    clip = two_touching_objects()
    tracker = start(clip)
    answer_with(clip, lambda k, gt: gt[2])  # object 1 is hidden: its prompt lands on object 2
    tracker.step(clip.frame(1))
    tracker.refine(clip.oracle.encode(clip.frame(1).image), 1)
    t1, t2 = tracker.tracks()
    assert t1.state == OCCLUDED and not t1.mask.any() and t2.state == TRACKED
    assert iou(t2.mask, clip.frame(1).gt[2]) > 0.95


def bleed(mask, px=30):
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


@pytest.mark.parametrize("max_growth", [0.1, 0.0])
def test_a_fully_seen_object_grows_by_at_most_max_growth_per_reprompt(max_growth):
    clip = Clip(motion="static", objects=1)
    tracker = start(clip, max_growth=max_growth)
    answer_with(clip, lambda k, gt: bleed(gt[k]))  # the answer spills 30 px into the background
    tracker.step(clip.frame(1))
    tracker.refine(clip.oracle.encode(clip.frame(1).image), 1)
    t = tracker.tracks()[0]
    x0, y0, x1, y1 = mask_box(clip.frame(1).gt[1])
    bx0, by0, bx1, by1 = mask_box(t.mask)
    if max_growth:
        dx, dy = max_growth * (x1 - x0) + 5, max_growth * (y1 - y0) + 5
        assert x0 - dx <= bx0 and y0 - dy <= by0 and bx1 <= x1 + dx and by1 <= y1 + dy
        assert bx1 - bx0 > x1 - x0  # it did grow, a little
    else:  # no limit: the whole spill is taken
        assert (bx0, by0, bx1, by1) == mask_box(bleed(clip.frame(1).gt[1]))


def test_a_partly_hidden_object_may_grow_back_at_once():
    clip = Clip(motion="static", objects=1)
    tracker = start(clip)
    gt0 = clip.frame(0).gt[1]
    x0, y0, x1, y1 = mask_box(gt0)
    half = gt0.copy()
    half[:, (x0 + x1) // 2 :] = False
    hidden = [True]
    answer_with(clip, lambda k, gt: half if hidden[0] else gt[k])  # the right half is hidden for a while
    tracker.step(clip.frame(1))
    tracker.refine(clip.oracle.encode(clip.frame(1).image), 1)
    assert iou(tracker.tracks()[0].mask, half) > 0.95
    hidden[0] = False  # it comes out again
    tracker.step(clip.frame(2))
    tracker.refine(clip.oracle.encode(clip.frame(2).image), 2)
    assert iou(tracker.tracks()[0].mask, clip.frame(2).gt[1]) > 0.95


@pytest.mark.parametrize("bad", [-1, float("nan"), "wide"])
def test_max_growth_must_be_a_number_at_least_zero(bad):
    with pytest.raises(EdgeSamError, match=f"max_growth {bad!r} is not a number >= 0"):
        Tracker(None, max_growth=bad)


def _sliding_patch(frames, speed):
    """Frames (HxWx3 uint8) of a textured 60 x 60 patch sliding right at ``speed`` px a frame (sub-pixel, by
    bilinear resampling) over a still textured background, and the patch's box in frame 0."""
    import cv2

    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(0, 256, (240, 320), np.uint8), (5, 5), 1.5)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (60, 60), np.uint8), (5, 5), 1.5)
    out = []
    for i in range(frames):
        m = np.array([[1.0, 0.0, 100 + speed * i], [0.0, 1.0, 90.0]])
        patch = cv2.warpAffine(texture, m, (320, 240), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(np.ones((60, 60), np.float32), m, (320, 240), flags=cv2.INTER_LINEAR)
        grey = (alpha * patch + (1 - alpha) * background).round().astype(np.uint8)
        out.append(np.repeat(grey[:, :, None], 3, 2))
    return out, (100, 90, 159, 149)


@pytest.mark.parametrize("speed", [0.3, 0.45, 1.3])
def test_flow_keeps_up_with_slow_motion(speed):
    """A mask carried by flow moves with its object however slowly it moves: warping it anew each frame
    would round every step of under half a pixel away (the mask would stay put at 0.3 px a frame)."""
    from .helpers import BoxPredictor

    frames, box = _sliding_patch(31, speed)
    tracker = Tracker(BoxPredictor(), colour_check=False, glimpses=False)
    tracker.add(box=box)
    tracker.step(frames[0], encode=True)
    for image in frames[1:]:
        (track,) = tracker.step(image)
    x0, _, x1, _ = mask_box(track.mask)
    moved = (x0 + x1) / 2 - (box[0] + box[2] + 1) / 2
    assert track.state == TRACKED
    assert abs(moved - 30 * speed) < 1.5, f"moved {moved:.1f} px, the patch {30 * speed:.1f} px"


@pytest.mark.parametrize("speed", [8, 12])
def test_a_late_answer_lands_on_a_fast_object(speed):
    """An answer of frame 3 taken at frame 6 is carried by the flow of every frame between: tracked two frames
    at a time, LK lost a patch moving 8 px a frame or more, and the answer landed 13.5 px (8 px a frame) and
    37.5 px (12) behind it."""
    from .helpers import BoxPredictor

    frames, box = _sliding_patch(12, speed)
    predictor = BoxPredictor()
    tracker = Tracker(predictor, colour_check=False, glimpses=False)
    tracker.add(box=box)
    tracker.step(frames[0], encode=True)
    for i, image in enumerate(frames[1:], 1):
        tracker.step(image)
        if i == 3:
            embedding = predictor.encode(image)
        if i == 6:
            assert tracker.refine(embedding, 3) == 1
        (track,) = tracker.tracks()
        x0, _, x1, _ = mask_box(track.mask)
        lag = (x0 + x1) / 2 - (box[0] + box[2] + 1) / 2 - speed * i
        assert abs(lag) < 1.5, f"frame {i}: the mask is {lag:+.1f} px off the patch"


def test_a_late_answer_is_followed_off_the_objects_known_to_be_in_front_of_it(monkeypatch):
    """The refine passes flow.follow, for an object with another known to be in front of it, that object's
    masks as the tracker carried them through the frames since the answer's (and nothing for the front one)."""
    from edgesam_edge.camera import flow

    clip = Clip(motion="medium", objects=2, seed=3)
    tracker = start(clip)
    a, b = tracker.ids
    for i in range(1, 4):
        tracker.step(clip.frame(i))
    tracker._depth.vote(b, a, 1.0)  # b in front of a
    seen = []
    real = flow.follow

    def spy(masks, grays, hop=1, covers=None):
        seen.append((set(masks), dict(covers or {})))
        return real(masks, grays, hop, covers)

    monkeypatch.setattr(flow, "follow", spy)
    shape = clip.frame(0).image.shape[:2]
    carried = [tracker._objects[b].history[i].full_mask(shape) for i in (2, 3)]  # before the answer changes them
    tracker.refine(clip.oracle.encode(clip.frame(1).image), 1)
    covers = {key: c for _, cs in seen for key, c in cs.items()}
    assert (0, a) in covers and not any(key[1] == b for key in covers)
    assert len(covers[(0, a)]) == 2 and all(c.any() for c in carried)
    assert all(np.array_equal(c, m) for c, m in zip(covers[(0, a)], carried))
