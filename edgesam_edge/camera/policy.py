"""How the live tracker re-prompts a given model: the defaults that depend on the weights.

``edgesam live`` (and the replay benchmark) re-prompt objects with their box plus
:data:`~edgesam_edge.camera.tracker.DEFAULT_MAX_POINTS` positive points and a negative
point on overlapping neighbours, except for a bundle of the packaged demo checkpoint
(:func:`is_demo_bundle`), which gets :data:`DEMO_REPROMPT_POINTS` and
:data:`DEMO_REPROMPT_NEGATIVES`.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["DEMO_CHECKPOINT_NAME", "DEMO_REPROMPT_POINTS", "DEMO_REPROMPT_NEGATIVES", "is_demo_bundle"]

#: File name of the demo checkpoint shipped in ``edgesam_edge/data``, as a bundle's manifest records it.
DEMO_CHECKPOINT_NAME = "edgesam_demo.safetensors"
#: Positive points the live tracker adds to an object's box when re-prompting the demo model. It was
#: trained on boxes or points, never both together: box-only re-prompts gave J 0.68 against 0.25 with
#: box + 2 points (benchmarks/README.md, "Live loop"). The official weights take both (default 2).
DEMO_REPROMPT_POINTS = 0
#: Whether the live tracker adds a negative point on an overlapping neighbour when re-prompting the
#: demo model. A box with a negative and no positive point is a prompt it never saw: the simulated
#: live loop's J over seeds 0-7 was 0.56 with negatives and 0.61 without (benchmarks/README.md).
DEMO_REPROMPT_NEGATIVES = False


def is_demo_bundle(manifest: Mapping[str, Any]) -> bool:
    """Whether a bundle (its manifest) was exported from the packaged demo checkpoint.

    True when ``manifest["source"]["checkpoint"]`` is :data:`DEMO_CHECKPOINT_NAME`.
    """
    source = manifest.get("source") or {}
    return source.get("checkpoint") == DEMO_CHECKPOINT_NAME
