"""The import contract: the runtime never reaches the build layer or torch, and nothing imports in a circle.

Every module of the package is read with ``ast``; imports inside functions,
``TYPE_CHECKING`` blocks and ``importlib.import_module("...")`` calls count too,
because they run (or say what a module needs). The layers, bottom to top:

- runtime: what a device runs with numpy, OpenCV and one backend;
- build: what makes artifacts (model and export, calibration, engine builders, training, bench);
- app: the ``edgesam`` command.

A layer imports its own and the layers below it, never one above. The runtime
imports no build-only package (torch and the exporters); the torch reference
backend, ``engines/torch.py``, is the one runtime module that may, by name.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgesam_edge"

#: Top-level modules and subpackages of each layer; every module of the package must be in one.
LAYERS: Dict[str, Tuple[str, ...]] = {
    "runtime": ("names", "errors", "transforms", "prompts", "predictor", "bundle", "metrics", "jsonsafe", "atomic",
                "imageio", "imageheader", "overlay", "sysinfo", "paths", "progress", "modules", "onnx_graph", "defaults", "weights",
                "engines", "camera", "everything"),
    "build": ("model", "calibration", "builders", "bench"),
    "app": ("cli", "commands", "__main__"),
}
ORDER = ("runtime", "build", "app")
#: Third-party packages only the build layer may import.
BUILD_ONLY_PACKAGES = frozenset({"torch", "torchvision", "litert_torch", "ai_edge_quantizer", "onnxslim"})
#: The torch reference backend: runtime by role (it runs checkpoints), torch by nature. It may import torch
#: and the network it runs (``model/``), never export, training, calibration or the app.
TORCH_EXEMPT = frozenset({"edgesam_edge.engines.torch"})
NOT_THE_NETWORK = ("edgesam_edge.model.export", "edgesam_edge.model.train")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_modules(root: Path = PACKAGE) -> Dict[str, Path]:
    """Module name -> file of every module of the package at ``root``."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def layer_of(module: str) -> Optional[str]:
    """The layer of a package module (``None`` for the package's own ``__init__``, which is lazy)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return next((layer for layer, tops in LAYERS.items() if parts[1] in tops), "unclassified")


def imported_names(module: str, path: Path, is_package: bool) -> Set[str]:
    """Every absolute module name ``module`` imports, anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = module.split(".") if is_package else module.split(".")[:-1]
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            stem = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)  # `from . import x` may be a module
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
            names.add(node.args[0].value)
    return names


def import_graph(modules: Dict[str, Path]) -> Tuple[Dict[str, Set[str]], Dict[str, Set[str]]]:
    """(package module -> package modules it imports, package module -> third-party top-level packages)."""
    own, external = {}, {}
    for mod, path in modules.items():
        deps, outside = set(), set()
        for name in imported_names(mod, path, path.name == "__init__.py"):
            if name.split(".")[0] != "edgesam_edge":
                outside.add(name.split(".")[0])
                continue
            parts = name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            target = ".".join(parts)
            if target and target != mod:
                deps.add(target)
        own[mod], external[mod] = deps, outside
    return own, external


def layer_violations(modules: Dict[str, Path]) -> List[str]:
    own, external = import_graph(modules)
    bad = []
    for mod in sorted(own):
        layer = layer_of(mod)
        if layer == "unclassified":
            bad.append(f"{mod} is in no layer: add its top-level name to LAYERS")
            continue
        if layer is None:
            continue
        for dep in sorted(own[mod]):
            dep_layer = layer_of(dep)
            if mod in TORCH_EXEMPT and dep.startswith("edgesam_edge.model") and not dep.startswith(NOT_THE_NETWORK):
                continue
            if dep_layer not in (None, "unclassified") and ORDER.index(dep_layer) > ORDER.index(layer):
                bad.append(f"{mod} ({layer}) imports {dep} ({dep_layer})")
        if layer == "runtime" and mod not in TORCH_EXEMPT:
            bad.extend(f"{mod} (runtime) imports {pkg}" for pkg in sorted(external[mod] & BUILD_ONLY_PACKAGES))
    return bad


def import_cycles(modules: Dict[str, Path]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), less a package's lazy ``__init__``."""
    graph, _ = import_graph(modules)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # `edgesam_edge/__init__.py` names its public modules under TYPE_CHECKING and imports them lazily
    return [c for c in cycles if "edgesam_edge" not in c]


def test_every_module_is_in_a_layer_and_imports_downwards():
    assert layer_violations(read_modules()) == []


def test_no_import_cycles():
    assert import_cycles(read_modules()) == []


@pytest.mark.parametrize("runtime_module, line, expected", [
    ("engines/tflite.py", "from ..calibration.quantize_tflite import quantize_tflite",
     "edgesam_edge.engines.tflite (runtime) imports edgesam_edge.calibration.quantize_tflite (build)"),
    ("predictor.py", "    from .model.export import export_onnx",
     "edgesam_edge.predictor (runtime) imports edgesam_edge.model.export (build)"),
    ("camera/loop.py", "import torch", "edgesam_edge.camera.loop (runtime) imports torch"),
    ("engines/torch.py", "from ..model.export import export_onnx",
     "edgesam_edge.engines.torch (runtime) imports edgesam_edge.model.export (build)"),
    ("weights/reader.py", "from ..commands import weights",
     "edgesam_edge.weights.reader (runtime) imports edgesam_edge.commands (app)"),
])
def test_the_contract_catches_a_violation(tmp_path, runtime_module, line, expected):
    """Each rule fails on a copy of the package with one bad import added (function-level included)."""
    copy = _copy_package(tmp_path)
    target = copy / runtime_module
    target.write_text(target.read_text() + f"\n\ndef _added():\n    {line.strip()}\n")
    assert expected in layer_violations(read_modules(copy))


def test_the_contract_catches_a_cycle(tmp_path):
    copy = _copy_package(tmp_path)
    (copy / "camera" / "mjpeg.py").write_text((copy / "camera" / "mjpeg.py").read_text()
                                              + "\nfrom .sinks import Sink  # noqa\n")
    assert ["edgesam_edge.camera.mjpeg", "edgesam_edge.camera.sinks"] in import_cycles(read_modules(copy))


def _copy_package(tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "edgesam_edge"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return dest
