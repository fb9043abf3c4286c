"""A deterministic synthetic scene: textured objects moving over a textured background.

Frame ``i`` of a scene is a pure function of ``(i, seed, size, objects, motion, fps)``:
no threads, no clock, no global state. Each frame comes with its ground truth,
the *visible* mask of every object (occluded parts removed), so the scene serves
as the camera loop's default source, as the ground truth of tracking tests and
benchmarks, and as training data for a demo model.

Objects translate along Lissajous paths, rotate, breathe in scale and pass over
one another (a fixed depth order, object 1 at the back), so they occlude each
other. ``motion`` scales every speed: ``static`` (0), ``slow`` (0.5),
``medium`` (1, the default), ``fast`` (2), or a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple, Union

import cv2
import numpy as np

from .errors import SourceError

__all__ = ["SyntheticScene", "ObjectSpec", "render_frame", "MOTION_PRESETS", "parse_motion"]

#: Named speed factors for ``motion=``.
MOTION_PRESETS: Dict[str, float] = {"static": 0.0, "slow": 0.5, "medium": 1.0, "fast": 2.0}
_SHAPES = ("ellipse", "rounded_rect", "star", "blob")


def parse_motion(motion: Union[str, float, int]) -> float:
    """``static``/``slow``/``medium``/``fast`` or a number >= 0 -> a speed factor."""
    if isinstance(motion, (int, float)):
        value = float(motion)
    else:
        text = str(motion).strip().lower()
        if text in MOTION_PRESETS:
            return MOTION_PRESETS[text]
        try:
            value = float(text)
        except ValueError:
            raise SourceError(
                f"synthetic motion {motion!r} is not one of {', '.join(MOTION_PRESETS)} or a number >= 0"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise SourceError(f"synthetic motion {motion!r} is not one of {', '.join(MOTION_PRESETS)} or a number >= 0")
    return value


@dataclass(frozen=True)
class ObjectSpec:
    """One object's appearance and path (all drawn from the scene's seed).

    Positions are fractions of the frame; angular frequencies are rad/s at motion 1.
    """

    id: int
    shape: str
    radius: float  # pixels, at scale 1
    center: Tuple[float, float]  # (x, y) fraction of the frame
    amplitude: Tuple[float, float]  # fraction of the frame
    freq: Tuple[float, float]  # rad/s
    phase: Tuple[float, float]
    spin: float  # rad/s
    angle0: float
    scale_amp: float
    scale_freq: float
    scale_phase: float


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 3) -> np.ndarray:
    """Value noise in [0, 1]: random values on a coarse grid, upsampled bicubically. (h, w, channels) float32."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    coarse = rng.random((gh, gw, channels), dtype=np.float32)
    up = cv2.resize(coarse, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    up = up.reshape(gh * cell, gw * cell, channels)[:h, :w]
    return np.clip(up, 0.0, 1.0)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A muted, textured background (HxWx3 uint8): soft blotches, finer grain and a few lines."""
    base = 0.55 * _smooth_noise(rng, h, w, 96) + 0.3 * _smooth_noise(rng, h, w, 24) + 0.15 * _smooth_noise(rng, h, w, 6)
    grey = base.mean(axis=2, keepdims=True)
    img = (0.35 * base + 0.65 * grey) * 200.0 + 25.0  # desaturated so objects stand out
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(12):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        shade = int(rng.integers(40, 220))
        cv2.line(img, p0, p1, (shade, shade, shade), int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.ascontiguousarray(img)


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A filled shape centred in a size x size canvas, uint8 0/255."""
    m = np.zeros((size, size), np.uint8)
    c = size // 2
    r = int(size * 0.45)
    if shape == "ellipse":
        axes = (r, max(4, int(r * rng.uniform(0.55, 0.85))))
        cv2.ellipse(m, (c, c), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    elif shape == "rounded_rect":
        hw, hh = r, max(4, int(r * rng.uniform(0.5, 0.8)))
        rad = max(2, hh // 3)
        cv2.rectangle(m, (c - hw + rad, c - hh), (c + hw - rad, c + hh), 255, -1)
        cv2.rectangle(m, (c - hw, c - hh + rad), (c + hw, c + hh - rad), 255, -1)
        for dx in (-hw + rad, hw - rad):
            for dy in (-hh + rad, hh - rad):
                cv2.circle(m, (c + dx, c + dy), rad, 255, -1, cv2.LINE_AA)
    elif shape == "star":
        n = int(rng.integers(5, 8))
        inner = rng.uniform(0.5, 0.65)
        pts = []
        for k in range(2 * n):
            rr = r if k % 2 == 0 else r * inner
            a = math.pi * k / n
            pts.append((c + rr * math.cos(a), c + rr * math.sin(a)))
        cv2.fillPoly(m, [np.round(np.array(pts)).astype(np.int32)], 255, cv2.LINE_AA)
    else:  # blob: a radius that wobbles with angle
        k = np.arange(0, 2 * math.pi, 2 * math.pi / 64)
        wob = 1.0 + 0.18 * np.sin(3 * k + rng.uniform(0, 6)) + 0.1 * np.sin(5 * k + rng.uniform(0, 6))
        rr = r * wob / wob.max()
        pts = np.stack([c + rr * np.cos(k), c + rr * np.sin(k)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    return m


def _object_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A saturated, high-contrast texture (size x size x 3 uint8) with corners for optical flow."""
    hue = rng.uniform(0, 180)
    hsv = np.empty((size, size, 3), np.float32)
    hsv[..., 0] = (hue + 25 * (_smooth_noise(rng, size, size, max(4, size // 4), 1)[..., 0] - 0.5)) % 180
    hsv[..., 1] = 170 + 80 * _smooth_noise(rng, size, size, max(4, size // 6), 1)[..., 0]
    hsv[..., 2] = 90 + 160 * _smooth_noise(rng, size, size, max(3, size // 10), 1)[..., 0]
    rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    # dots and stripes: strong, trackable corners
    for _ in range(int(size * size / 900) + 6):
        p = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(rgb, p, int(rng.integers(2, max(3, size // 16))), col, -1)
    step = int(rng.integers(8, 16))
    for x in range(0, size, step * 2):
        rgb[:, x : x + 2] = (rgb[:, x : x + 2] * 0.4).astype(np.uint8)
    return rgb


def check_scene_args(width: int, height: int, objects: int, fps: float) -> None:
    """Refuse a synthetic scene's size (32..8192 per side), object count (0..32) or fps (positive, finite).

    Raises:
        SourceError: one line naming the value and the range expected.
    """
    if width < 32 or height < 32 or width > 8192 or height > 8192:
        raise SourceError(f"synthetic size {width}x{height} is outside 32x32 .. 8192x8192")
    if not 0 <= int(objects) <= 32:
        raise SourceError(f"synthetic objects={objects} is not between 0 and 32")
    if not (fps > 0 and math.isfinite(fps)):
        raise SourceError(f"synthetic fps={fps} is not a positive number")


class SyntheticScene:
    """A deterministic scene: ``render(i)`` gives frame i and its per-object visible masks.

    Args:
        width, height: frame size in pixels.
        objects: number of moving objects (ids 1..objects, id 1 at the back).
        seed: everything random (background, shapes, textures, paths) comes from it.
        motion: speed factor or preset name (see :func:`parse_motion`).
        fps: frame rate; frame i is the scene at time i / fps.
    """

    def __init__(self, width: int = 640, height: int = 480, objects: int = 3, seed: int = 0,
                 motion: Union[str, float] = "medium", fps: float = 30.0) -> None:
        check_scene_args(width, height, objects, fps)
        self.width, self.height = int(width), int(height)
        self.fps = float(fps)
        self.seed = int(seed)
        self.motion = parse_motion(motion)
        rng = np.random.default_rng(self.seed)
        self.background = _background(rng, self.height, self.width)
        self.specs: List[ObjectSpec] = []
        self._sprites: List[Tuple[np.ndarray, np.ndarray]] = []
        short = min(self.width, self.height)
        for k in range(int(objects)):
            shape = _SHAPES[int(rng.integers(0, len(_SHAPES)))]
            radius = short * rng.uniform(0.11, 0.17)
            side = int(2 * radius / 0.9) | 1
            mask = _shape_mask(shape, side, rng)
            tex = _object_texture(rng, side)
            self._sprites.append((tex, mask))
            # spread the objects' home positions across the frame
            cx = (k + 0.5) / max(1, objects) * 0.7 + 0.15 + rng.uniform(-0.05, 0.05)
            cy = rng.uniform(0.35, 0.65)
            self.specs.append(ObjectSpec(
                id=k + 1, shape=shape, radius=float(radius), center=(float(cx), float(cy)),
                amplitude=(float(rng.uniform(0.12, 0.25)), float(rng.uniform(0.1, 0.2))),
                freq=(float(rng.uniform(0.6, 1.1)), float(rng.uniform(0.5, 1.0))),
                phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
                spin=float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.8)), angle0=float(rng.uniform(0, 2 * math.pi)),
                scale_amp=float(rng.uniform(0.1, 0.2)), scale_freq=float(rng.uniform(0.3, 0.7)),
                scale_phase=float(rng.uniform(0, 2 * math.pi)),
            ))

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def pose(self, index: int, obj: int) -> Tuple[float, float, float, float]:
        """(x, y, angle rad, scale) of object id ``obj`` at frame ``index``."""
        s = self.specs[obj - 1]
        t = index / self.fps * self.motion
        x = (s.center[0] + s.amplitude[0] * math.sin(s.freq[0] * t + s.phase[0])) * self.width
        y = (s.center[1] + s.amplitude[1] * math.sin(s.freq[1] * t + s.phase[1])) * self.height
        angle = s.angle0 + s.spin * t
        scale = 1.0 + s.scale_amp * math.sin(s.scale_freq * t + s.scale_phase)
        return x, y, angle, scale

    def render(self, index: int, visible: bool = True) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
        """Frame ``index``: (HxWx3 uint8 RGB image, {object id: HxW bool mask}).

        The masks are what is visible of each object (``visible=False``: whole objects, occluded parts too).
        """
        img = self.background.copy()
        full: Dict[int, np.ndarray] = {}
        for spec, (tex, mask) in zip(self.specs, self._sprites):
            x, y, angle, scale = self.pose(index, spec.id)
            side = tex.shape[0]
            m = cv2.getRotationMatrix2D((side / 2.0, side / 2.0), math.degrees(angle), scale)
            m[0, 2] += x - side / 2.0
            m[1, 2] += y - side / 2.0
            half = side * scale * 0.75 + 2
            x0, y0 = max(0, int(x - half)), max(0, int(y - half))
            x1, y1 = min(self.width, int(math.ceil(x + half))), min(self.height, int(math.ceil(y + half)))
            obj_mask = np.zeros((self.height, self.width), bool)
            if x1 > x0 and y1 > y0:
                m_roi = m.copy()
                m_roi[0, 2] -= x0
                m_roi[1, 2] -= y0
                size = (x1 - x0, y1 - y0)
                w_tex = cv2.warpAffine(tex, m_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                w_mask = cv2.warpAffine(mask, m_roi, size, flags=cv2.INTER_LINEAR, borderValue=0) > 127
                roi = img[y0:y1, x0:x1]
                roi[w_mask] = w_tex[w_mask]
                obj_mask[y0:y1, x0:x1] = w_mask
            full[spec.id] = obj_mask
        if not visible:
            return img, full
        # visible = own mask minus everything drawn later (in front)
        gt: Dict[int, np.ndarray] = {}
        front = np.zeros((self.height, self.width), bool)
        for spec in reversed(self.specs):
            gt[spec.id] = full[spec.id] & ~front
            front |= full[spec.id]
        return img, {k: gt[k] for k in sorted(gt)}


def render_frame(index: int, seed: int = 0, size: Tuple[int, int] = (640, 480), objects: int = 3,
                 motion: Union[str, float] = "medium", fps: float = 30.0) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
    """Frame ``index`` of the scene ``(seed, size=(w, h), objects, motion, fps)``: (image, {id: mask}).

    Builds the scene each call; to render many frames, make one :class:`SyntheticScene`
    and call its ``render``.
    """
    return SyntheticScene(size[0], size[1], objects, seed, motion, fps).render(index)
