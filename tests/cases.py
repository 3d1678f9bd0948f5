"""Test cases shared between test files: random SPD, factored and GGN problems, and the in-process
CLI call with its one-line error check. (tests/physics.py holds the physics tests' problems and
theory; tests/torch_cases.py the small models and batches; tests/conftest.py the fixtures.)"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from spu.core.problems import FactoredProblem, GGNProblem
from spu.core.softmax import random_softmax_hessian

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")


def random_factored(n: int, m: int, lam: float, seed: int, scale: float = 1.0) -> FactoredProblem:
    """A = lam I + U U^T with U = scale * N(0, 1) / sqrt(n), then b ~ N(0, 1), from one rng."""
    rng = np.random.default_rng(seed)
    U = scale * rng.standard_normal((n, m)) / np.sqrt(n)
    return FactoredProblem(U, lam, rng.standard_normal(n))


def random_ggn_problem(n: int, batch: int, dz: int, lam: float, rng: np.random.Generator) -> GGNProblem:
    """A random TNGD system A = J^T H_L J + lam I, A x = b: J (batch*dz x n) standard normal, H_L
    from random logits (sum over the batch, as in the paper's crossbar), b standard normal. Drawn
    in that order from rng."""
    J = rng.normal(size=(batch * dz, n))
    H = random_softmax_hessian(rng, batch, dz)
    b = rng.normal(size=n)
    return GGNProblem(J, H, lam, b)


def call(capsys, *args):
    """analysis.cli.main in-process: (exit status, stdout, stderr)."""
    from analysis.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, out, err, *needles):
    """A failed command printed one `thermospice: error:` line naming every needle (regex), and
    no traceback."""
    assert rc != 0, f"expected failure, got rc=0 and stdout {out[:200]!r}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected ONE line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("thermospice: error: "), lines[0]
    for needle in needles:
        assert re.search(needle, lines[0], re.IGNORECASE), f"{needle!r} not in {lines[0]!r}"
    return lines[0]
