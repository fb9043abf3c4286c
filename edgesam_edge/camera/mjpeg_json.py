"""Strict reading of the live view's POSTed JSON: anything but the documented shapes is a :class:`BadRequest`.

``json.loads`` alone accepts ``NaN``, ``Infinity`` and ``1e999`` (as infinity) and
nests as deep as the body allows; here those, wrong types (``"5"``, ``true`` for a
number), unknown fields and points outside the frame are refused with a one-line
reason the server sends back with status 400.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Optional, Tuple

from .sink_base import UserEvent

__all__ = ["Refused", "BadRequest", "loads_strict", "prompt_event", "remove_id", "pause_flag", "MAX_DEPTH"]

#: Deepest nesting of arrays / objects a body may have (the documented shapes need 2).
MAX_DEPTH = 4


class Refused(Exception):
    """A request the server refuses: ``code`` is the HTTP status, the message one line sent back."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = int(code)


class BadRequest(Refused, ValueError):
    """A malformed body or value (status 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def _refuse_constant(name: str) -> float:
    raise BadRequest(f"{name} is not a number JSON allows here; send finite numbers")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise BadRequest(f"number {text[:20]} is too large")
    return v


def _depth(raw: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (so no body reaches the parser's recursion limit)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in raw:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_strict(body: bytes) -> Any:
    """Parse a UTF-8 JSON body, refusing NaN, infinities, numbers that overflow and deep nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    if _depth(text) > MAX_DEPTH:
        raise BadRequest(f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except BadRequest:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not JSON: {str(exc).splitlines()[0][:120]}") from None


def _number(data: Dict[str, Any], key: str) -> float:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"{key} {json.dumps(v)[:40]} is not a number")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise BadRequest(f"{key} is not a finite number")
    return f


def _fields(data: Any, allowed: Tuple[str, ...]) -> Dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest(f"expected a JSON object with {', '.join(allowed)}")
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise BadRequest(f"unknown field {extra[0]!r}: expected {', '.join(allowed)}")
    return data


def _inside(x: float, y: float, size: Optional[Tuple[int, int]]) -> None:
    if size and size[0] > 0 and size[1] > 0:
        w, h = size
        if not (0 <= x <= w and 0 <= y <= h):
            raise BadRequest(f"point ({x:g}, {y:g}) is outside the {w}x{h} frame")


def prompt_event(data: Any, size: Optional[Tuple[int, int]] = None) -> UserEvent:
    """``POST /prompt``: ``{"x", "y", "label"}`` (label 1 or 0, default 1), ``{"box": [x0, y0, x1, y1]}`` or
    ``{"clear": true}``, in pixels of a frame of ``size`` (width, height) -> a :class:`UserEvent`."""
    if isinstance(data, dict) and "clear" in data:
        _fields(data, ("clear",))
        if data["clear"] is not True:
            raise BadRequest("clear must be true")
        return UserEvent("clear")
    if isinstance(data, dict) and "box" in data:
        _fields(data, ("box",))
        box = data["box"]
        if not isinstance(box, list) or len(box) != 4:
            raise BadRequest("box must be a list [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (_number({"box": v}, "box") for v in box)
        if not (x1 > x0 and y1 > y0):
            raise BadRequest(f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] has x1 <= x0 or y1 <= y0")
        _inside(x0, y0, size)
        _inside(x1, y1, size)
        return UserEvent("box", box=(x0, y0, x1, y1))
    data = _fields(data, ("x", "y", "label"))
    x, y = _number(data, "x"), _number(data, "y")
    label = data.get("label", 1)
    if isinstance(label, bool) or not isinstance(label, (int, float)) or label not in (0, 1):
        raise BadRequest(f"label {json.dumps(label)[:20]} is not 1 (positive) or 0 (negative)")
    _inside(x, y, size)
    return UserEvent("point", x, y, int(label))


def remove_id(data: Any) -> int:
    """``POST /remove``: ``{"id": N}`` -> N, a whole number >= 0."""
    data = _fields(data, ("id",))
    oid = data.get("id")
    if isinstance(oid, bool) or not isinstance(oid, int) or oid < 0:
        raise BadRequest(f"id {json.dumps(oid)[:20]} is not an object id (a whole number)")
    return oid


def pause_flag(data: Any) -> bool:
    """``POST /pause``: ``{"paused": true | false}``."""
    data = _fields(data, ("paused",))
    flag = data.get("paused")
    if not isinstance(flag, bool):
        raise BadRequest("paused must be true or false")
    return flag
