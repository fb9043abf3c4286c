"""Objects cut from photographs, for the photo scenes (:mod:`edgesam_edge.camera.scenes`).

The photos are the sample images scikit-image ships, read from its package folder
with OpenCV (scikit-image itself is not imported); without it
:class:`~edgesam_edge.errors.BackendUnavailable` names the extra that installs it.
A cut-out is a real one (the fundus disc of ``retina``, a half of the scikit-image
logo: their own pixels) or a silhouette (the ``horse``, a blob, a rounded slab)
filled with a crop of another photo.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from ..errors import BackendUnavailable

__all__ = ["photo_dir", "read_photo", "Sprite", "sprite", "BACKGROUNDS", "FILLS", "CUTOUTS", "SILHOUETTES", "SAME"]

#: Photos a background is taken from (colour photos, and grey textures that get a tint).
BACKGROUNDS = ("motorcycle_right.png", "coffee.png", "rocket.jpg", "chelsea.png", "astronaut.png",
                "brick.png", "grass.png", "gravel.png", "camera.png")
#: Photos a silhouette is filled with.
FILLS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "ihc.png")
#: Cut-outs: real ones (their own pixels) and silhouettes filled with a crop of a photo.
CUTOUTS = ("retina", "logo_green", "logo_orange", "horse", "blob", "slab")
SILHOUETTES = ("horse", "blob", "slab")
#: The same photo under two names (a stereo pair): never background and fill of one scene.
SAME = {"motorcycle_left.png": "motorcycle_right.png"}


def photo_dir() -> Path:
    """The folder of scikit-image's sample photos (scikit-image is not imported)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("scikit-image's sample photos (for synthetic://?scene=photo)", "dev")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def read_photo(name: str) -> np.ndarray:
    """A sample photo as HxWx3 RGB uint8, or HxWx4 RGBA for the images with alpha."""
    path = photo_dir() / name
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BackendUnavailable(f"scikit-image's sample photo {name} (for synthetic://?scene=photo)", "dev",
                                 f"{path} is missing or unreadable")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a bool mask, holes filled."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    if n < 2:
        return mask.astype(bool)
    comp = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    flood = np.pad(comp, 1)
    cv2.floodFill(flood, None, (0, 0), 1)
    return comp.astype(bool) | (flood[1:-1, 1:-1] == 0)


def _crop(img: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a photo (at least half its short side), resized to ``side``: RGB uint8."""
    h, w = img.shape[:2]
    s = int(min(h, w) * rng.uniform(0.5, 0.9))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    return cv2.resize(np.ascontiguousarray(img[y : y + s, x : x + s, :3]), (side, side), interpolation=cv2.INTER_AREA)


def _silhouette(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """A filled silhouette (``horse``, ``blob`` or ``slab``) centred in a side x side canvas, bool."""
    m = np.zeros((side, side), np.uint8)
    c, r = side / 2.0, side * 0.46
    if kind == "horse":
        horse = read_photo("horse.png")
        sil = horse[..., 0] < 128
        ys, xs = np.nonzero(sil)
        sil = sil[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.uint8) * 255
        k = 2 * r / max(sil.shape)
        sil = cv2.resize(sil, (max(1, int(sil.shape[1] * k)), max(1, int(sil.shape[0] * k))), interpolation=cv2.INTER_AREA)
        y0, x0 = (side - sil.shape[0]) // 2, (side - sil.shape[1]) // 2
        m[y0 : y0 + sil.shape[0], x0 : x0 + sil.shape[1]] = sil
        return m > 127
    if kind == "blob":
        a = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        rad = np.ones_like(a)
        for k in range(2, 6):
            rad += rng.uniform(0.0, 0.22 / k * 2) * np.sin(k * a + rng.uniform(0, 2 * math.pi))
        rad = r * rad / rad.max()
        pts = np.stack([c + rad * np.cos(a), c + rad * np.sin(a) * rng.uniform(0.6, 1.0)], 1)
    else:  # slab: a rounded rectangle (a book, a phone, a box)
        hw, hh = r, r * rng.uniform(0.45, 0.8)
        rc = hh * rng.uniform(0.15, 0.5)
        t = np.linspace(0, math.pi / 2, 8)
        corners = [(hw - rc, hh - rc, 0.0), (-hw + rc, hh - rc, math.pi / 2), (-hw + rc, -hh + rc, math.pi),
                   (hw - rc, -hh + rc, 1.5 * math.pi)]
        pts = np.concatenate([np.stack([c + cx + rc * np.cos(t + a0), c + cy + rc * np.sin(t + a0)], 1)
                              for cx, cy, a0 in corners])
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return m > 127


def _cutout(kind: str, side: int, rng: np.random.Generator, fills: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(texture side x side x 3 RGB uint8, mask side x side bool) of one object."""
    if kind == "retina":
        img = read_photo("retina.jpg")
        mask = _largest_filled(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) > 20)
    elif kind.startswith("logo_"):
        rgba = read_photo("logo.png")
        img = np.ascontiguousarray(rgba[..., :3])
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        sat = hsv[..., 1] > 60
        part = sat & (hsv[..., 0] > 25) & (hsv[..., 0] < 90) if kind == "logo_green" else sat & (hsv[..., 0] <= 25)
        part = cv2.morphologyEx(part.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8)) > 0
        mask = _largest_filled(part)
    else:
        return _crop(read_photo(fills[int(rng.integers(0, len(fills)))]), side, rng), _silhouette(kind, side, rng)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    s = max(y1 - y0, x1 - x0)
    pad_y, pad_x = (s - (y1 - y0)) // 2, (s - (x1 - x0)) // 2
    tex = np.zeros((s, s, 3), np.uint8)
    msk = np.zeros((s, s), np.uint8)
    tex[pad_y : pad_y + y1 - y0, pad_x : pad_x + x1 - x0] = img[y0:y1, x0:x1]
    msk[pad_y : pad_y + y1 - y0, pad_x : pad_x + x1 - x0] = mask[y0:y1, x0:x1] * 255
    inner = int(round(side * 0.92))
    off = (side - inner) // 2
    tex_out = np.zeros((side, side, 3), np.uint8)
    msk_out = np.zeros((side, side), np.uint8)
    tex_out[off : off + inner, off : off + inner] = cv2.resize(tex, (inner, inner), interpolation=cv2.INTER_AREA)
    msk_out[off : off + inner, off : off + inner] = cv2.resize(msk, (inner, inner), interpolation=cv2.INTER_AREA)
    return tex_out, msk_out > 127


@dataclass(frozen=True)
class Sprite:
    """One object's look: texture, soft alpha (uint8), and the geometry the occlusion events need."""

    kind: str
    texture: np.ndarray  # side x side x 3 RGB
    alpha: np.ndarray  # side x side uint8, soft edge
    radius: float  # pixels, from the centre to the farthest mask pixel, at scale 1
    inner: float  # radius of the widest disc inside the mask, at scale 1
    inner_at: Tuple[float, float]  # that disc's centre, relative to the canvas centre
    depth_map: np.ndarray  # distance of each canvas pixel to the mask's edge (0 outside), float32

    def hidden_run(self, direction: float, radius: float) -> float:
        """Length of the straight path through the inner disc's centre, at ``direction`` rad (sprite frame),
        along which a disc of ``radius`` stays entirely inside the mask (scale 1 pixels)."""
        c = (self.alpha.shape[0] - 1) / 2.0
        s = np.arange(-self.radius - radius, self.radius + radius, 1.0)
        xs = np.round(c + self.inner_at[0] + s * math.cos(direction)).astype(int)
        ys = np.round(c + self.inner_at[1] + s * math.sin(direction)).astype(int)
        side = self.depth_map.shape[0]
        ok = (xs >= 0) & (ys >= 0) & (xs < side) & (ys < side)
        inside = np.zeros(len(s), bool)
        inside[ok] = self.depth_map[ys[ok], xs[ok]] >= radius
        return float(inside.sum())


def sprite(kind: str, side: int, rng: np.random.Generator, fills: List[str]) -> Sprite:
    tex, mask = _cutout(kind, side, rng, fills)
    alpha = cv2.GaussianBlur(mask.astype(np.uint8) * 255, (3, 3), 0.8)
    ys, xs = np.nonzero(mask)
    c = (side - 1) / 2.0
    radius = float(np.sqrt((xs - c) ** 2 + (ys - c) ** 2).max())
    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)
    _, inner, _, loc = cv2.minMaxLoc(dist)
    return Sprite(kind, tex, alpha, radius, float(inner), (loc[0] - 1 - c, loc[1] - 1 - c),
                   np.ascontiguousarray(dist[1:-1, 1:-1]))
