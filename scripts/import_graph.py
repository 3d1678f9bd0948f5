"""Cross-package import edges of the project (all import statements, function-level ones included),
counted per edge: the picture behind tests/test_layering.py.  Run: python scripts/import_graph.py [ROOT]

spu/core and spu/backends are listed apart from the rest of spu/, since the layering rules differ."""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path

PACKAGES = ("circuits", "spu", "training", "analysis")


def layer(parts: list[str]) -> str:
    if parts[0] == "spu" and len(parts) > 1 and parts[1] in ("core", "backends"):
        return "/".join(parts[:2])
    return parts[0]


def edges(root: Path) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            src = layer(list(path.relative_to(root).parts))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    if parts[0] in PACKAGES and layer(parts) != src:
                        out[(src, layer(parts))] += 1
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    for (a, b), n in sorted(edges(root).items()):
        print(f"{a} -> {b}: {n}")
