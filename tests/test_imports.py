"""The package's imports go one way: every module imports alone, there is no import cycle
(module level or inside functions; `if TYPE_CHECKING:` blocks aside) and each module imports
only from its own layer or the layers below (LAYERS)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import fastcore_ext

PACKAGE = Path(fastcore_ext.__file__).parent
ROOT = PACKAGE.parent

# The layers of the package (see the README's map). A module may import from its own layer
# and the layers below. A package's entry (fastcore_ext.data, fastcore_ext.callback) is
# named as the package; a prefix entry ending in '.' covers every module under it.
LAYERS: dict[str, int] = {
    "fastcore_ext": 0,
    "fastcore_ext._ext": 0,
    "fastcore_ext.ops": 0,
    "fastcore_ext.reference": 0,
    "fastcore_ext.schedule": 0,
    "fastcore_ext.metrics": 0,
    "fastcore_ext.ranks": 0,
    "fastcore_ext.hardware": 0,
    "fastcore_ext.compiling": 0,
    "fastcore_ext.integrity": 0,
    "fastcore_ext.checks": 0,
    "fastcore_ext.warn": 0,
    "fastcore_ext.files": 0,
    "fastcore_ext.hooks": 0,
    "fastcore_ext.losses": 0,
    "fastcore_ext.foundation": 0,
    "fastcore_ext.torch_core": 0,
    "fastcore_ext.layers": 0,
    "fastcore_ext.xresnet": 0,
    "fastcore_ext.layer_groups": 1,
    "fastcore_ext.augment": 1,
    "fastcore_ext.optim": 1,
    "fastcore_ext.checkpoint": 1,
    "fastcore_ext.plots": 1,
    "fastcore_ext.model_builder": 1,
    "fastcore_ext.export": 2,
    "fastcore_ext.data": 2,
    "fastcore_ext.data.": 2,
    "fastcore_ext.data.block": 2,
    "fastcore_ext.callback": 3,
    "fastcore_ext.callback.": 3,
    "fastcore_ext.interrupt": 3,
    "fastcore_ext.learner": 4,
    "fastcore_ext.inference": 4,
    "fastcore_ext.exported": 5,
    "fastcore_ext.widgets": 5,
    "fastcore_ext.interpret": 4,
    "fastcore_ext.vision": 5,
    "fastcore_ext.vision.all": 5,
    "fastcore_ext.lesson": 6,
    "fastcore_ext.launch": 6,
    "fastcore_ext.distributed": 6,
    "fastcore_ext.cli": 6,
    "fastcore_ext.__main__": 6,
}


def module_files() -> dict[str, Path]:
    """Every module of the package: dotted name -> source file (a package's is __init__.py)."""
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names of the package's modules that `tree` imports, at any depth (functions,
    methods, try blocks...), except under `if TYPE_CHECKING:`."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{a.name}" for a in node.names)  # submodules, if any
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [n for n in found if n == "fastcore_ext" or n.startswith("fastcore_ext.")]


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules that importing it executes directly: each imported
    module, and the packages above it whose __init__ runs first (except the importer's own
    packages, already imported when it runs)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        tree = ast.parse(f.read_text(), filename=str(f))
        own = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        edges = set()
        for target in _imported_names(tree, name, f.name == "__init__.py"):
            if target not in files:
                continue  # a name imported from a module, not a module
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                step = ".".join(parts[:k])
                if step in files and step not in own and step != name:
                    edges.add(step)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return path[path.index(v) :] + [v]
            if v not in state and (cycle := dfs(v)) is not None:
                return cycle
        path.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (cycle := dfs(u)) is not None:
            return cycle
    return None


def layer_of(module: str) -> int | None:
    if module in LAYERS:
        return LAYERS[module]
    prefixes = [p for p in LAYERS if p.endswith(".") and module.startswith(p)]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def test_cycle_finder_sees_cycles_through_functions_and_packages():
    """The checker itself: a cycle hidden in a function body, and one through a package's
    __init__, are found; a TYPE_CHECKING import and a sibling import inside a package are
    not edges."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from fastcore_ext.learner import Learner
        def f():
            from fastcore_ext.vision import create_cnn
        from . import core
        """
    )
    names = _imported_names(ast.parse(src), "fastcore_ext.callback.x", is_package=False)
    assert "fastcore_ext.vision" in names and "fastcore_ext.callback.core" in names
    assert "fastcore_ext.learner" not in names


def test_no_import_cycle():
    graph = import_graph()
    assert "fastcore_ext.callback.ddp" in graph and "fastcore_ext.vision" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_follow_the_layers():
    graph = import_graph()
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"modules without a layer (add them to LAYERS): {unplaced}"
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in sorted(graph.items())
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


# Run in a fresh interpreter: third-party libraries are imported once, then each package
# module is imported in a forked child in which no fastcore_ext module was ever imported, so
# an import that works only because another module was imported first fails there.
_ALONE = """
import os, sys, traceback
import matplotlib, numpy, PIL.Image, torch, torch.distributed, torchvision
assert not [m for m in sys.modules if m.split(".")[0] == "fastcore_ext"]
failed = 0
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        print(f"FAILED: import {name}", file=sys.stderr)
        failed += 1
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone():
    names = sorted(n for n in module_files() if n != "fastcore_ext.__main__")  # (runs the CLI)
    proc = subprocess.run(
        [sys.executable, "-c", _ALONE, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_fastais_star_import_names_of_trial_h():
    """TensorCategory(1) was an uninitialized float tensor of shape (1,) (torch.Tensor's
    size constructor); array, the torchvision builders beyond resnets/densenets/vgg*_bn,
    opt.clear_state() and learn.to_channelslast() were missing."""
    import copy

    import numpy as np
    import torch
    import torchvision

    from fastcore_ext import vision

    label = vision.TensorCategory(1)
    assert label.dtype == torch.int64 and label.shape == () and int(label) == 1
    assert repr(label) == "TensorCategory(1)" and ["a", "b"][label] == "b"
    assert vision.TensorCategory([0, 2]).dtype == torch.int64
    img = vision.TensorImage(np.zeros((3, 4, 4), np.uint8))
    assert type(img) is vision.TensorImage and img.dtype == torch.uint8
    assert type(copy.deepcopy(img)) is vision.TensorImage  # it raised (new_empty)
    assert vision.array([1, 2]).tolist() == [1, 2]
    for name in torchvision.models.list_models(module=torchvision.models):
        assert getattr(vision, name) is getattr(torchvision.models, name) and name in vision.__all__
    from fakes import make_learner

    learn = make_learner()
    learn.fit(1, 1e-3)
    assert len(learn.opt.state) > 0
    learn.opt.clear_state()
    assert len(learn.opt.state) == 0
    assert learn.to_channelslast() is learn and learn.channels_last


def test_loaders_and_data_sets_give_vocab_and_c_as_fastais(tmp_path):
    from fastcore_ext.data import ImageDataBunch, demo_dataset

    root = demo_dataset(tmp_path / "demo", n_per_class=2, size=32)
    data = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0)
    for obj in (data.train_dl, data.valid_dl, data.train_ds):
        assert obj.vocab == data.classes and obj.c == data.c == len(data.classes)
