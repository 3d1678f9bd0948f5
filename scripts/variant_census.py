"""Census of the code's structure, for the refactoring note: where variant names are compared,
where problem types are told apart with isinstance, and the longest functions.

    python scripts/variant_census.py [ROOT] [--list]

A "name comparison" is an ==, !=, in or not in whose other side is a string literal (or a
tuple/list/set of them) naming a backend, topology, sweep kind or optimizer. Tests and
benchmarks are left out: they may name what they test."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("circuits", "spu", "training", "analysis", "netlists")
NAMES = {
    "backend": {"ngspice", "asbuilt", "ou", "euler", "direct", "langevin"},
    "topology": {"ideal", "dense", "crossbar", "factored", "oscillator"},
    "sweep": {"noise", "tolerance", "bits", "opamp", "time", "train-bits", "train-tolerance", "train-noise"},
    "optimizer": {"tngd", "tngd-adam", "adam", "sgd", "ngd", "ngd-cg", "ngd-woodbury"},
}
PROBLEM_TYPES = {"DenseProblem", "FactoredProblem", "GGNProblem"}


def _strings(node) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        out = set()
        for e in node.elts:
            out |= _strings(e)
        return out
    return set()


def files(root: Path):
    for pkg in PACKAGES:
        yield from sorted((root / pkg).rglob("*.py"))


def census(root: Path):
    comparisons, isinstances, functions = [], [], []
    for path in files(root):
        rel = str(path.relative_to(root))
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and all(
                isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops
            ):
                lits = set()
                for side in [node.left, *node.comparators]:
                    lits |= _strings(side)
                kinds = sorted(k for k, names in NAMES.items() if lits & names)
                if kinds:
                    comparisons.append((rel, node.lineno, "/".join(kinds)))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and len(node.args) == 2
            ):
                types = node.args[1]
                names = {
                    e.id for e in (types.elts if isinstance(types, ast.Tuple) else [types]) if isinstance(e, ast.Name)
                }
                if names & PROBLEM_TYPES:
                    isinstances.append((rel, node.lineno))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    functions.sort(reverse=True)
    return comparisons, isinstances, functions


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = Path(args[0] if args else Path(__file__).resolve().parents[1])
    comparisons, isinstances, functions = census(root)
    by_kind: dict[str, int] = {}
    for _, _, k in comparisons:
        by_kind[k] = by_kind.get(k, 0) + 1
    print(f"name comparisons: {len(comparisons)} ({', '.join(f'{k} {n}' for k, n in sorted(by_kind.items()))})")
    print(f"isinstance on problem types: {len(isinstances)} in {len({f for f, _ in isinstances})} files")
    print(f"functions over 80 lines: {sum(1 for n, _ in functions if n > 80)}")
    print("ten longest functions:")
    for n, name in functions[:10]:
        print(f"  {n:4d}  {name}")
    if "--list" in sys.argv:
        for rel, line, kind in comparisons:
            print(f"compare {kind}: {rel}:{line}")
        for rel, line in isinstances:
            print(f"isinstance: {rel}:{line}")
