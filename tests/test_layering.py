"""The package layers (docs: spu/core at the bottom; in spu only the circuit backends and their shared
spu/backends/circuit.py reach circuits; training never does) and the absence of import cycles between
files, read from the source with ast.

Every import counts, also those inside functions: a lazy import still ties two files together."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("circuits", "spu", "training", "analysis", "netlists", "benchmarks", "tests")
# Files in spu/ allowed to import circuits/ (add a future circuit backend here, on purpose).
CIRCUIT_BRIDGES = {"spu/backends/circuit.py", "spu/backends/ngspice.py", "spu/backends/asbuilt.py"}


def _files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved), at any depth."""
    mod = _module_of(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            out.add(prefix)
            out.update(f"{prefix}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def _graph() -> dict[str, set[str]]:
    """File-level graph: module -> project modules it imports (a.b.name resolved to a file)."""
    files = {_module_of(p): p for p in _files()}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps = set()
        for name in _imports(path):
            # The longest prefix of the name that is a project file.
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            if parts and ".".join(parts) != mod:
                deps.add(".".join(parts))
        graph[mod] = deps
    return graph


def _project_imports(path: Path) -> set[str]:
    return {n for n in _imports(path) if n.split(".")[0] in PACKAGES}


def test_circuits_uses_only_the_core_of_spu():
    for path in (ROOT / "circuits").rglob("*.py"):
        bad = {n for n in _project_imports(path) if n.split(".")[0] == "spu" and not n.startswith("spu.core")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_core_imports_nothing_above_it():
    for path in (ROOT / "spu" / "core").rglob("*.py"):
        bad = {n for n in _project_imports(path) if not n.startswith("spu.core")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_only_the_bridge_imports_circuits_from_spu():
    users = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "spu").rglob("*.py")
        if any(n.split(".")[0] == "circuits" for n in _project_imports(p))
    }
    assert users <= CIRCUIT_BRIDGES, sorted(users - CIRCUIT_BRIDGES)


def test_the_device_does_not_import_circuits():
    """Not even lazily: a circuit backend, found through the registry, makes and checks the design."""
    bad = {n for n in _project_imports(ROOT / "spu" / "device.py") if n.split(".")[0] == "circuits"}
    assert not bad, sorted(bad)


def test_training_does_not_import_circuits():
    """Training hands the SPU a design built through spu/backends/circuit.py."""
    for path in (ROOT / "training").rglob("*.py"):
        bad = {n for n in _project_imports(path) if n.split(".")[0] == "circuits"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


# What a run on each backend loads, seen in a fresh interpreter: the modules under these prefixes.
_LOADED = """
import json, sys
import numpy as np
from spu import SPU, FactoredProblem
spu = SPU({backend!r})
spu.run(FactoredProblem(np.eye(3, 2), 0.5, np.ones(3)), t=1.0)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("circuits", "spu"))))
"""


def _loaded_by(backend: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _LOADED.format(backend=backend)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("backend", ["ou", "direct", "euler", "langevin"])
def test_a_numeric_backend_loads_neither_circuits_nor_ngspice(backend):
    loaded = _loaded_by(backend)
    assert f"spu.backends.{backend}" in loaded  # the check sees what a run imports
    bad = [
        m
        for m in loaded
        if m.split(".")[0] == "circuits"
        or m.startswith(("spu.ngspice", "spu.backends.circuit", "spu.backends.ngspice"))
    ]
    assert not bad, bad


def test_asbuilt_loads_circuits_but_not_ngspice():
    loaded = _loaded_by("asbuilt")
    assert "circuits.realised" in loaded
    assert not [m for m in loaded if m.startswith(("spu.ngspice", "spu.backends.ngspice"))]


def test_no_import_cycle_between_files():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_a_function_level_import(tmp_path):
    """Power: the parser resolves relative and function-level imports, so a lazy circle shows."""
    pkg = tmp_path / "circuits"
    pkg.mkdir()
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    from spu.device import SPU\n")
    global ROOT
    old = ROOT
    ROOT = tmp_path
    try:
        assert _imports(pkg / "b.py") >= {"circuits.a", "spu.device"}
        assert _graph()["circuits.b"] == {"circuits.a"} and _graph()["circuits.a"] == {"circuits.b"}
    finally:
        ROOT = old
