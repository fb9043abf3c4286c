"""Drawing masks, boxes and prompts over an image (OpenCV), for `segment` and the live view."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np

Color = Tuple[int, int, int]


def color_for(index: int) -> Color:
    """A distinct, stable RGB colour for an object index (golden-angle hues)."""
    hue = int((index * 137.508) % 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_mask(image: np.ndarray, mask: np.ndarray, color: Color, alpha: float = 0.5, contour: bool = True) -> None:
    """Blend ``color`` into ``image`` (HxWx3 uint8, in place) where ``mask`` (HxW bool) is set."""
    if not mask.any():
        return
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    roi = image[y0:y1, x0:x1]
    m = mask[y0:y1, x0:x1]
    tint = np.asarray(color, np.float32)
    roi[m] = (roi[m] * (1.0 - alpha) + tint * alpha).astype(np.uint8)
    if contour:
        cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(roi, cnts, -1, color, 2)


def draw_points(image: np.ndarray, points: Iterable[Sequence[float]], labels: Iterable[float]) -> None:
    """Positive points as green dots, negative as red, with a white ring (in place)."""
    for (x, y), lab in zip(points, labels):
        if lab < 0:
            continue
        c = (0, 220, 0) if lab > 0 else (230, 0, 0)
        center = (int(round(x)), int(round(y)))
        cv2.circle(image, center, 6, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(image, center, 4, c, -1, cv2.LINE_AA)


def draw_box(image: np.ndarray, box: Sequence[float], color: Color = (255, 255, 255),
             label: Optional[str] = None) -> None:
    """A rectangle x0, y0, x1, y1 with an optional text label above it (in place)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x0, y0), (x1, y1), color, 2, cv2.LINE_AA)
    if label:
        cv2.putText(image, label, (x0 + 2, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


def draw_text(image: np.ndarray, text: str, org: Tuple[int, int] = (8, 20)) -> None:
    """White text with a dark outline, readable on any background (in place)."""
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
