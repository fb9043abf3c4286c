"""One ONNX decoder that runs a graph specialised for one prompt and another for batches of prompts.

The mask decoder's cheapest order depends on B, the number of prompts of a call
(:mod:`edgesam_edge.model.fast_decoder`): the first layer's image-side projections are
worth computing once for the whole batch when B > 1, and worth folding into the prompt
tokens when B = 1 (about 10-20% of a B = 1 call at S = 1024). The exporter writes both
graphs into one ``decoder.onnx``, switched on B by an ``If`` node::

    B = Shape(point_coords)[0]
    scores, masks = If(B == 1, then=<single>, else=<batch>)

Inputs, outputs and their names are the official ones, so every ONNX consumer runs it as
before; ONNX Runtime and OpenVINO run the branch each call's B asks for. The two branches
share their weights (identical initializers are stored once, in the outer graph): the file
is no larger than the batch graph alone.

Consumers that need one plain graph (TensorRT rejects ``If``; quantisation, MAC counting)
take a branch with :func:`branch_of` / :func:`plain_decoder_file`.

Needs the ``onnx`` package only.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np

from ..errors import EdgeSamError
from ..names import BRANCH_PREFIXES, DECODER_POINT_COORDS

logger = logging.getLogger(__name__)

__all__ = ["SWITCH_NODE", "BRANCHES", "merge_by_batch", "transformer_outputs", "has_batch_switch", "branch_of",
           "branch_for", "plain_decoder_file", "all_nodes"]

#: Name of the ``If`` node that switches on B.
SWITCH_NODE = "batch_switch"
#: Branch names: "single" (B = 1, the If's then-branch) and "batch" (any B, the else-branch); the tensors
#: inside each carry its name as a prefix (:data:`~edgesam_edge.names.BRANCH_PREFIXES`).
BRANCHES = tuple(prefix.rstrip("/") for prefix in BRANCH_PREFIXES)

PathLike = Union[str, Path]


def _weight_key(init: Any) -> tuple:
    from onnx import numpy_helper

    values = numpy_helper.to_array(init)
    return init.data_type, tuple(init.dims), hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def _store(init: Any, weights: Dict[tuple, str], outer: List[Any], prefix: str) -> str:
    """Move a weight into the outer graph (once per distinct value); returns its outer name."""
    import onnx

    key = _weight_key(init)
    if key not in weights:
        moved = onnx.TensorProto()
        moved.CopyFrom(init)
        taken = any(t.name == init.name for t in outer)
        moved.name = prefix + init.name if taken else init.name
        outer.append(moved)
        weights[key] = moved.name
    return weights[key]


def _as_branch(model: Any, prefix: str, weights: Dict[tuple, str], outer: List[Any]) -> Any:
    """``model``'s graph as an If branch with the same outputs: no inputs (the outer graph's are in scope),
    node outputs prefixed, initializers moved to ``outer`` (identical ones stored once)."""
    import onnx
    from onnx import helper

    graph = model.graph
    used = {i for n in graph.node for i in _inputs_deep(n)}
    rename = {init.name: _store(init, weights, outer, prefix) for init in graph.initializer if init.name in used}
    rename.update({out: prefix + out for node in graph.node for out in node.output if out})
    copies = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.output[0])
        copy.input[:] = [rename.get(i, i) for i in node.input]
        copy.output[:] = [rename.get(o, o) for o in node.output]
        copies.append(copy)
    outputs = []
    for out in graph.output:
        value = onnx.ValueInfoProto()
        value.CopyFrom(out)
        value.name = rename[out.name]
        outputs.append(value)
    return helper.make_graph(copies, prefix.rstrip("/"), [], outputs)


def transformer_outputs(model: Any, scope: str = "/transformer/layers.") -> List[str]:
    """The tensors a decoder graph's two-way blocks hand on to the transformer's final attention, the
    upscaling and the heads: made by a node of the exporter's module ``scope`` and read by a node outside
    it (or a graph output), constants and weights left out. Sorted.

    This is where OpenVINO cuts the decoder for mixed precision (the blocks in fp32, the rest in bf16 /
    fp16). Cutting after the final token -> image attention instead kept the masks no closer to fp32
    (demo model: mean IoU 0.995 both) and ran 7% slower at B = 16.

    For a graph switched on B, those of its batch branch (the single-prompt branch has the same names).
    """
    graph = branch_of(model, "batch").graph
    live = {i.name for i in graph.input}  # tensors that depend on an input (not weights, their casts)
    for n in graph.node:
        if live.intersection(_inputs_deep(n)):
            live.update(n.output)
    inside = {o for n in graph.node if n.name.startswith(scope) for o in n.output if o in live}
    used = {i for n in graph.node if not n.name.startswith(scope) for i in _inputs_deep(n)}
    return sorted(inside & (used | {o.name for o in graph.output}))


def merge_by_batch(batch: Any, single: Any, switch_input: str = DECODER_POINT_COORDS) -> Any:
    """One model running ``single`` when ``switch_input``'s first dimension is 1, else ``batch``.

    Args:
        batch: ModelProto correct for every B (the else-branch).
        single: ModelProto with the same inputs and outputs, used for B = 1 (the then-branch).
        switch_input: the graph input whose first dimension is B.

    The switch covers the whole graphs, though the two orders differ in the transformer only: an
    If whose outputs feed further nodes runs wrongly in OpenVINO 2026.4 with dynamic shapes (the
    first call of each branch), an If whose outputs are the graph's does not.

    Raises:
        EdgeSamError: the two graphs' inputs or outputs differ, or ``switch_input`` is not an input.
    """
    import onnx
    from onnx import helper, numpy_helper

    def names(values: Any) -> List[str]:
        return [v.name for v in values]

    bg, sg = batch.graph, single.graph
    if names(bg.input) != names(sg.input) or names(bg.output) != names(sg.output):
        raise EdgeSamError(f"graphs to merge differ: inputs {names(bg.input)} / {names(sg.input)}, "
                           f"outputs {names(bg.output)} / {names(sg.output)}")
    if switch_input not in names(bg.input):
        raise EdgeSamError(f"switch input {switch_input!r} is not one of the graph inputs {names(bg.input)}")
    outer: List[Any] = []
    weights: Dict[tuple, str] = {}
    then_branch = _as_branch(single, BRANCH_PREFIXES[0], weights, outer)
    else_branch = _as_branch(batch, BRANCH_PREFIXES[1], weights, outer)
    nodes = [
        helper.make_node("Shape", [switch_input], ["batch_switch/b"], name="batch_switch/shape", start=0, end=1),
        helper.make_node("Constant", [], ["batch_switch/one"], name="batch_switch/one",
                         value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Equal", ["batch_switch/b", "batch_switch/one"], ["batch_switch/is_one"],
                         name="batch_switch/equal"),
        helper.make_node("Squeeze", ["batch_switch/is_one"], ["batch_switch/cond"], name="batch_switch/squeeze"),
        helper.make_node("If", ["batch_switch/cond"], names(bg.output), name=SWITCH_NODE,
                         then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(nodes, bg.name, list(bg.input), list(bg.output), outer)
    opsets = {o.domain: o.version for o in list(single.opset_import) + list(batch.opset_import)}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              ir_version=batch.ir_version, producer_name=batch.producer_name,
                              producer_version=batch.producer_version)
    for prop in batch.metadata_props:
        model.metadata_props.append(prop)
    onnx.checker.check_model(model)
    return model


def _is_switch(node: Any) -> bool:
    return node.op_type == "If" and node.name == SWITCH_NODE


def _switch(model: Any) -> Any:
    return next((n for n in model.graph.node if _is_switch(n)), None)


def has_batch_switch(model: Any) -> bool:
    """Whether ``model`` (a ModelProto) is a decoder merged by :func:`merge_by_batch`."""
    return _switch(model) is not None


def branch_for(batch_size: int) -> str:
    """The branch that runs for ``batch_size`` prompts: "single" for 1, else "batch"."""
    return "single" if int(batch_size) == 1 else "batch"


def branch_of(model: Any, which: str = "batch") -> Any:
    """``model`` with its switch replaced by one branch inlined: a plain graph, same inputs and outputs.

    A model without a switch is returned as it is.
    """
    import onnx
    from onnx import helper

    if which not in BRANCHES:
        raise EdgeSamError(f"branch {which!r} is not one of {', '.join(BRANCHES)}")
    switch = _switch(model)
    if switch is None:
        return model
    attr = "then_branch" if which == "single" else "else_branch"
    body = next(a.g for a in switch.attribute if a.name == attr)
    # the branch's tensors get their names from before the merge back, unless the outer graph has that name
    prefix = BRANCH_PREFIXES[BRANCHES.index(which)]
    taken = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | \
        {o for n in model.graph.node for o in n.output}
    back = {o: o[len(prefix):] for n in body.node for o in n.output
            if o.startswith(prefix) and o[len(prefix):] not in taken}
    back.update({o.name: final for o, final in zip(body.output, switch.output)})
    nodes = []
    for node in model.graph.node:
        if _is_switch(node):  # the chosen branch takes its place
            for inner in body.node:
                copy = onnx.NodeProto()
                copy.CopyFrom(inner)
                copy.name = inner.name[len(prefix):] if inner.name.startswith(prefix) else inner.name
                copy.output[:] = [back.get(o, o) for o in inner.output]
                copy.input[:] = [back.get(i, i) for i in inner.input]
                nodes.append(copy)
        elif not node.name.startswith(f"{SWITCH_NODE}/"):
            nodes.append(node)
    used = {i for n in nodes for i in _inputs_deep(n)}
    inits = [t for t in model.graph.initializer if t.name in used]
    graph = helper.make_graph(nodes, model.graph.name, list(model.graph.input), list(model.graph.output), inits)
    plain = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                              producer_name=model.producer_name, producer_version=model.producer_version)
    onnx.checker.check_model(plain)
    return plain


def _subgraphs(node: Any) -> List[Any]:
    """The GraphProtos a node holds (an If's two branches)."""
    return [g for attr in node.attribute for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)]


def _inputs_deep(node: Any) -> List[str]:
    """A node's inputs and those of the nodes of its subgraphs."""
    return list(node.input) + [i for g in _subgraphs(node) for n in g.node for i in _inputs_deep(n)]


def all_nodes(graph: Any) -> List[Any]:
    """Every node of ``graph`` (a GraphProto), those of its subgraphs (If branches) included."""
    return [m for node in graph.node for m in [node] + [k for g in _subgraphs(node) for k in all_nodes(g)]]


def plain_decoder_file(path: PathLike, out: PathLike, which: str = "batch") -> Path:
    """``path`` itself if its graph has no switch, else one branch of it written to ``out``."""
    import onnx

    model = onnx.load(str(path))
    if not has_batch_switch(model):
        return Path(path)
    onnx.save(branch_of(model, which), str(out))
    logger.debug("%s: took its %s branch into %s", path, which, out)
    return Path(out)
