"""A second synthetic scene family, made from photographs: ``synthetic://?scene=photo``.

The ``shapes`` family (:mod:`edgesam_edge.camera.synthetic`) draws flat, saturated
shapes over value noise. This one is built the way a user's camera sees things:

- the background is a photograph (or a photographed texture, tinted);
- objects are cut from photographs: real cut-outs (the fundus disc of ``retina``,
  the two halves of the scikit-image logo) and silhouettes (the ``horse``, smooth
  blobs, rounded slabs) filled with a crop of another photo, with soft edges;
- they wander along smooth random paths, rotate and change scale, leave the
  frame and come back;
- every object but the front-most regularly passes behind one in front of it,
  hidden for 0.5-3 s (the occluder's widest inner disc covers it), often while
  both move;
- the camera shakes (slow drift plus jitter, a little roll and zoom), the
  exposure breathes and the sensor adds noise.

Frame ``i`` is a pure function of ``(i, seed, size, objects, motion, fps)``. Each
frame comes with the *visible* mask of every object (empty while it is hidden or
out of the frame). The photos are the sample images scikit-image ships, read
from its package folder without importing it (:mod:`edgesam_edge.camera.photos`);
without scikit-image the scene raises :class:`~edgesam_edge.errors.BackendUnavailable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from .errors import SourceError
from .photos import BACKGROUNDS, CUTOUTS, FILLS, SAME, SILHOUETTES, Sprite, read_photo, sprite
from .synthetic import SyntheticScene, check_scene_args, parse_motion

__all__ = ["PhotoScene", "SCENE_FAMILIES", "make_scene", "scene_family"]

#: Scene families of ``synthetic://?scene=...``: the original shapes, and the photo scenes of this module.
SCENE_FAMILIES = ("shapes", "photo")


def _smooth(t: float, terms: np.ndarray) -> float:
    """A sum of sines: rows of (amplitude, angular frequency, phase)."""
    return float(np.sum(terms[:, 0] * np.sin(terms[:, 1] * t + terms[:, 2])))


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class _Event:
    """Object ``hider`` passes behind ``occluder``: fully hidden about ``hidden`` s around ``center`` s."""

    occluder: int  # index into the scene's objects
    center: float
    hidden: float
    direction: Tuple[float, float]  # unit vector of the path, relative to the occluder's inner disc
    run: float  # path length (pixels) along which it is fully hidden, crossed in ``hidden`` s
    fast: float  # pixels/s relative to the occluder while it goes in and comes out
    scale: float  # the hider's scale during the event
    hold: float  # half the time the event path is followed in full
    ramp: float = 1.0  # seconds to blend in and out

    def offset(self, t: float) -> float:
        """Where along the path the hider is at time ``t`` (0: the disc's centre): slow while hidden,
        fast while going in and coming out, as someone who walks behind a car and waits there."""
        dt = t - self.center
        half = self.hidden / 2.0
        if abs(dt) <= half:
            return self.run / 2.0 * dt / half
        return math.copysign(self.run / 2.0 + self.fast * (abs(dt) - half), dt)


class PhotoScene:
    """A deterministic photo scene: ``render(i)`` gives frame i and its per-object visible masks.

    Args:
        width, height: frame size in pixels.
        objects: number of objects (ids 1..objects; their depth order is drawn from the seed).
        seed: everything random comes from it (photos, cut-outs, paths, occlusions, shake).
        motion: speed factor or preset name (see :func:`~edgesam_edge.camera.synthetic.parse_motion`).
        fps: frame rate; frame i is the scene at time i / fps.
    """

    family = "photo"

    def __init__(self, width: int = 640, height: int = 480, objects: int = 3, seed: int = 0,
                 motion: Union[str, float] = "medium", fps: float = 30.0) -> None:
        check_scene_args(width, height, objects, fps)
        self.width, self.height, self.fps, self.seed = int(width), int(height), float(fps), int(seed)
        self.motion = parse_motion(motion)
        rng = np.random.default_rng([self.seed, 0x70686F746F])
        w, h = self.width, self.height
        self._margin = m = int(0.06 * max(w, h)) + 4
        bg_name = BACKGROUNDS[int(rng.integers(0, len(BACKGROUNDS)))]
        self.background = self._make_background(bg_name, rng)
        fills = [f for f in FILLS if f != bg_name and SAME.get(f) != bg_name]
        short = min(w, h)
        n = int(objects)
        sizes = np.sort(rng.uniform(0.16, 0.32, n) * short)  # canvas half-sides; front objects (closer) larger
        self.depth = [int(v) for v in rng.permutation(n)]  # depth[k]: position of object id k+1, 0 = back
        self._sprites: List[Sprite] = []
        used: List[str] = []
        for k in range(n):
            side = int(2 * sizes[self.depth[k]]) | 1
            kinds = [c for c in CUTOUTS if c not in used or c in SILHOUETTES]  # a real cut-out appears once
            kind = kinds[int(rng.integers(0, len(kinds)))]
            used.append(kind)
            self._sprites.append(sprite(kind, side, rng, fills))
        self._path_cache: Dict[Tuple[int, int], np.ndarray] = {}
        self._paths = [self._make_path(rng) for _ in range(n)]
        self._slots = [int(v) for v in rng.permutation(n)]
        self._events: List[List[_Event]] = [[] for _ in range(n)]
        for k in sorted(range(n), key=lambda j: -self.depth[j]):  # front first: a hider follows its occluder
            self._events[k] = self._make_events(k, rng)
        self._shake = rng.uniform([1.5, 0.25, 0], [4.0, 1.0, 2 * math.pi], (3, 3)) * [1, 2 * math.pi, 1]
        self._shake_y = rng.uniform([1.5, 0.25, 0], [4.0, 1.0, 2 * math.pi], (3, 3)) * [1, 2 * math.pi, 1]
        self._jitter = rng.uniform([0.4, 4.0, 0], [1.4, 9.0, 2 * math.pi], (4, 3)) * [1, 2 * math.pi, 1]
        self._roll = np.array([[math.radians(rng.uniform(0.2, 0.6)), rng.uniform(0.5, 1.5), rng.uniform(0, 6.3)]])
        self._zoom = np.array([[rng.uniform(0.005, 0.015), rng.uniform(0.3, 0.8), rng.uniform(0, 6.3)]])
        self._gain = np.array([[rng.uniform(0.02, 0.05), rng.uniform(0.5, 1.5), rng.uniform(0, 6.3)]])
        noise_rng = np.random.default_rng([self.seed, 0x6E6F697365])
        self._noise: List[Tuple[np.ndarray, np.ndarray]] = []
        for _ in range(3):
            grain = np.clip(noise_rng.normal(0, 2.5, (h, w)), -8, 8).round()
            up = np.repeat(np.maximum(grain, 0).astype(np.uint8)[..., None], 3, 2)
            down = np.repeat(np.maximum(-grain, 0).astype(np.uint8)[..., None], 3, 2)
            self._noise.append((up, down))
        self._m = m

    # -- construction -------------------------------------------------------------------------
    def _make_background(self, name: str, rng: np.random.Generator) -> np.ndarray:
        """The photo scaled to cover the frame plus a margin for the shake, randomly cropped."""
        img = read_photo(name)[..., :3]
        tw, th = self.width + 2 * self._margin, self.height + 2 * self._margin
        k = max(tw / img.shape[1], th / img.shape[0]) * rng.uniform(1.0, 1.3)
        big = cv2.resize(img, (int(math.ceil(img.shape[1] * k)), int(math.ceil(img.shape[0] * k))),
                         interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        y, x = int(rng.integers(0, big.shape[0] - th + 1)), int(rng.integers(0, big.shape[1] - tw + 1))
        bg = big[y : y + th, x : x + tw].astype(np.float32)
        if np.ptp(img.reshape(-1, 3).astype(np.int16).std(0)) < 1 and (img[..., 0] == img[..., 1]).all():
            bg = bg * rng.uniform(0.75, 1.1, 3).astype(np.float32)  # a grey texture: tint it
        return np.ascontiguousarray(np.clip(bg, 0, 255).astype(np.uint8))

    def _make_path(self, rng: np.random.Generator) -> Dict[str, object]:
        return {"dt": float(rng.uniform(2.0, 3.6)), "key": int(rng.integers(0, 2**31 - 1)),
                "spin": float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.6)), "angle0": float(rng.uniform(0, 2 * math.pi)),
                "wobble": np.array([[rng.uniform(0.2, 0.7), rng.uniform(0.5, 1.5), rng.uniform(0, 6.3)]]),
                "scale": np.array([[rng.uniform(0.08, 0.2), rng.uniform(0.3, 0.9), rng.uniform(0, 6.3)],
                                   [rng.uniform(0.02, 0.08), rng.uniform(1.0, 2.0), rng.uniform(0, 6.3)]])}

    def _make_events(self, k: int, rng: np.random.Generator) -> List[_Event]:
        """Occlusion events of object k: every 8-11 s it passes behind an object in front of it."""
        front = [j for j in range(len(self._sprites)) if self.depth[j] > self.depth[k]]
        if not front:
            return []
        out: List[_Event] = []
        start = float(rng.uniform(0.5, 3.0))  # the first event's window opens after 0.5-3 s
        for _ in range(64):  # about ten minutes of scene; afterwards objects just wander
            t = start + 3.0  # about the centre
            near = sorted(front, key=lambda i: float(np.hypot(*(self._pose(i, t)[0] - self._wander(k, t)))))
            j = near[0] if rng.random() < 0.75 else front[int(rng.integers(0, len(front)))]  # mostly the nearest
            occ, me = self._sprites[j], self._sprites[k]
            hidden = float(rng.uniform(0.4, 2.5))
            scale = float(np.clip(rng.uniform(0.45, 0.65) * occ.inner / me.radius, 0.3, 1.3))
            # it comes from where it is: the path starts on its side of the occluder
            to_me = self._wander(k, start + 1.5) - self._pose(j, start + 1.5)[0]
            a = math.atan2(-to_me[1], -to_me[0]) + float(rng.uniform(-0.5, 0.5))
            # the occluder's angle at the event (without the wobble) turns the path into its sprite frame
            a_sprite = a + float(self._paths[j]["angle0"]) + float(self._paths[j]["spin"]) * t  # type: ignore[arg-type]
            run = max(self._sprites[j].hidden_run(a_sprite, scale * me.radius), 0.1 * occ.inner)
            fast = 2.0 * scale * me.radius / float(rng.uniform(0.4, 1.0))  # in or out of hiding in 0.4-1 s
            reach = occ.radius + scale * me.radius + 10.0  # where it is clear of the occluder
            hold = hidden / 2.0 + max(0.0, reach - run / 2.0) / fast
            ramp = 1.5
            center = start + ramp + hold
            if center - hold - ramp < 0.5:
                center = 0.5 + hold + ramp
            out.append(_Event(j, center, hidden, (math.cos(a), math.sin(a)), run, fast, scale, hold, ramp))
            start = center + hold + ramp + float(rng.uniform(3.0, 7.0))
        return out

    # -- motion ---------------------------------------------------------------------------------
    def _key(self, k: int, n: int) -> np.ndarray:
        """Waypoint n of object k's wander path, (x, y) pixels; some lie outside the frame."""
        got = self._path_cache.get((k, n))
        if got is None:
            r = np.random.default_rng([self.seed, k, int(self._paths[k]["key"]), max(n, -1) + 1])
            x, y = r.uniform(0.12, 0.88) * self.width, r.uniform(0.18, 0.82) * self.height
            if n <= 0:  # the start: objects side by side, so every one can be prompted in frame 0
                x = (self._slots[k] + 0.5 + r.uniform(-0.15, 0.15)) / len(self._slots) * self.width
            elif n > 1 and r.random() < 0.12:  # out of the frame, back later
                x = -0.25 * self.width if r.random() < 0.5 else 1.25 * self.width
            got = np.array([x, y])
            if len(self._path_cache) > 4096:
                self._path_cache.clear()
            self._path_cache[(k, n)] = got
        return got

    def _wander(self, k: int, t: float) -> np.ndarray:
        dt = float(self._paths[k]["dt"])  # type: ignore[arg-type]
        u = t / dt
        n = int(math.floor(u))
        f = u - n
        p0, p1, p2, p3 = (self._key(k, n + i) for i in (-1, 0, 1, 2))
        # Catmull-Rom
        return 0.5 * ((2 * p1) + (-p0 + p2) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f * f
                      + (-p0 + 3 * p1 - 3 * p2 + p3) * f ** 3)

    def _own_pose(self, k: int, t: float) -> Tuple[np.ndarray, float, float]:
        p = self._paths[k]
        angle = float(p["angle0"]) + float(p["spin"]) * t + _smooth(t, p["wobble"])  # type: ignore[arg-type]
        scale = 1.0 + _smooth(t, p["scale"])  # type: ignore[arg-type]
        return self._wander(k, t), angle, scale

    def _pose(self, k: int, t: float) -> Tuple[np.ndarray, float, float]:
        """(centre (x, y) world pixels, angle rad, scale) of object index k at time t (motion applied)."""
        pos, angle, scale = self._own_pose(k, t)
        for ev in self._events[k]:
            lo, hi = ev.center - ev.hold - ev.ramp, ev.center + ev.hold + ev.ramp
            if t < lo or t > hi:
                continue
            w = _smoothstep((t - lo) / ev.ramp) * _smoothstep((hi - t) / ev.ramp)
            o_pos, o_angle, o_scale = self._pose(ev.occluder, t)
            ix, iy = self._sprites[ev.occluder].inner_at
            ca, sa = math.cos(o_angle), math.sin(o_angle)
            disc = o_pos + o_scale * np.array([ca * ix + sa * iy, -sa * ix + ca * iy])
            target = disc + np.array(ev.direction) * ev.offset(t)
            pos = (1 - w) * pos + w * target
            scale = (1 - w) * scale + w * ev.scale
            break
        return pos, angle, scale

    def _time(self, index: int) -> float:
        return index / self.fps * self.motion

    def pose(self, index: int, obj: int) -> Tuple[float, float, float, float]:
        """(x, y, angle rad, scale) of object id ``obj`` at frame ``index``, in the unshaken world."""
        pos, angle, scale = self._pose(obj - 1, self._time(index))
        return float(pos[0]), float(pos[1]), angle, scale

    def camera(self, index: int) -> np.ndarray:
        """The shaking camera at frame ``index``: 2x3 transform from world to frame pixels."""
        t = index / self.fps  # the hand shakes in real time, whatever the objects' speed
        dx = _smooth(t, self._shake) + _smooth(t, self._jitter)
        dy = _smooth(t, self._shake_y) + _smooth(t + 11.0, self._jitter)
        m = cv2.getRotationMatrix2D((self.width / 2.0, self.height / 2.0), math.degrees(_smooth(t, self._roll)),
                                    1.0 + _smooth(t, self._zoom))
        m[:, 2] += (dx, dy)
        return m

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    # -- drawing --------------------------------------------------------------------------------
    def render(self, index: int, visible: bool = True) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
        """Frame ``index``: (HxWx3 uint8 RGB image, {object id: HxW bool mask}).

        The masks are what is visible of each object (``visible=False``: whole objects, hidden parts too).
        """
        w, h, m = self.width, self.height, self._m
        cam = self.camera(index)
        bg_m = cam.copy()
        bg_m[:, 2] -= cam[:, :2] @ np.array([m, m], np.float64)
        img = cv2.warpAffine(self.background, bg_m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        t = self._time(index)
        full: Dict[int, np.ndarray] = {}
        cam3 = np.vstack([cam, [0.0, 0.0, 1.0]])
        for k in sorted(range(len(self._sprites)), key=lambda j: self.depth[j]):
            sp = self._sprites[k]
            pos, angle, scale = self._pose(k, t)
            side = sp.alpha.shape[0]
            c = (side - 1) / 2.0
            pose = cv2.getRotationMatrix2D((c, c), math.degrees(angle), scale)
            pose[:, 2] += pos - c
            mat = (cam3 @ np.vstack([pose, [0.0, 0.0, 1.0]]))[:2]
            corners = np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64) @ mat[:, :2].T + mat[:, 2]
            x0, y0 = np.floor(corners.min(0)).astype(int) - 1
            x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            obj = np.zeros((h, w), bool)
            if x1 > x0 and y1 > y0:
                roi_m = mat.copy()
                roi_m[:, 2] -= (x0, y0)
                size = (x1 - x0, y1 - y0)
                a = cv2.warpAffine(sp.alpha, roi_m, size, flags=cv2.INTER_LINEAR, borderValue=0)
                tex = cv2.warpAffine(sp.texture, roi_m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                roi = img[y0:y1, x0:x1]
                np.copyto(roi, tex, where=(a == 255)[..., None])
                edge = (a > 0) & (a < 255)  # the soft rim: blended
                af = a[edge].astype(np.float32)[:, None] * (1.0 / 255.0)
                roi[edge] = (roi[edge] * (1.0 - af) + tex[edge] * af + 0.5).astype(np.uint8)
                obj[y0:y1, x0:x1] = a > 127
            full[k + 1] = obj
        img = cv2.convertScaleAbs(img, alpha=1.0 + _smooth(index / self.fps, self._gain))  # exposure
        up, down = self._noise[index % len(self._noise)]
        img = cv2.subtract(cv2.add(img, up), down)  # sensor noise, saturating
        if not visible:
            return img, full
        gt: Dict[int, np.ndarray] = {}
        front = np.zeros((h, w), bool)
        for k in sorted(range(len(self._sprites)), key=lambda j: -self.depth[j]):
            gt[k + 1] = full[k + 1] & ~front
            front |= full[k + 1]
        return img, {i: gt[i] for i in sorted(gt)}


def make_scene(scene: str = "shapes", width: int = 640, height: int = 480, objects: int = 3, seed: int = 0,
               motion: Union[str, float] = "medium", fps: float = 30.0) -> Union[SyntheticScene, PhotoScene]:
    """A scene of family ``scene`` (``shapes`` or ``photo``); the other arguments as :class:`PhotoScene`.

    Raises:
        SourceError: an unknown family (or a bad size, count or frame rate).
        BackendUnavailable: ``photo`` without scikit-image installed.
    """
    name = str(scene).strip().lower()
    if name == "shapes":
        return SyntheticScene(width, height, objects, seed, motion, fps)
    if name == "photo":
        return PhotoScene(width, height, objects, seed, motion, fps)
    raise SourceError(f"synthetic scene {scene!r} is not one of {', '.join(SCENE_FAMILIES)}")


def scene_family(scene: Optional[str]) -> str:
    """The family name of a ``scene=`` value (None: ``shapes``); SourceError when unknown."""
    name = "shapes" if scene is None else str(scene).strip().lower()
    if name not in SCENE_FAMILIES:
        raise SourceError(f"synthetic scene {scene!r} is not one of {', '.join(SCENE_FAMILIES)}")
    return name
