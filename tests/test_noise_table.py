"""Noise tables (circuits/noise_table.py): the files, and that ngspice's filesource reads every
column of them as written (real ngspice)."""

from __future__ import annotations

import numpy as np
import pytest

from circuits.netlist import Netlist
from circuits.noise_table import COLUMNS, LINE_MAX, SCALE, chunks, file_name, noise_files
from spu.core.errors import DesignError
from spu.ngspice.run import run_ngspice


def _parse(files: dict[str, bytes], n: int) -> tuple[np.ndarray, np.ndarray]:
    cols, times = [], None
    for j in range(len(files)):
        rows = np.array([ln.split() for ln in files[file_name(j)].decode().splitlines()], dtype=float)
        times = rows[:, 0]
        cols.append(rows[:, 1:])
    return times, np.concatenate(cols, axis=1)[:, :n]


def test_tables_are_unit_normals_on_the_hold_grid_and_reproducible():
    n, hold, t = 150, 1e-9, 2e-6
    files = noise_files(n, t, hold, seed=4)
    assert set(files) == {file_name(j) for j in range(len(chunks(n)))} and len(files) == 3
    assert all(len(ln) < LINE_MAX for blob in files.values() for ln in blob.decode().splitlines())
    times, z = _parse(files, n)
    assert np.allclose(times, np.arange(len(times)) * hold, rtol=0, atol=1e-24) and times[-1] >= t
    z = z * SCALE
    k = z.size
    # Mean and variance of k unit normals, each within 5 standard errors.
    assert abs(z.mean()) < 5 / np.sqrt(k) and abs(z.var() - 1) < 5 * np.sqrt(2 / k)
    assert noise_files(n, t, hold, seed=4) == files
    assert noise_files(n, t, hold, seed=5) != files


def test_every_column_reaches_its_node(tmp_path):
    """150 sources (three instances, as many columns as a line allows): node i, a 1 ohm resistor to
    ground, must carry exactly column i of its table at every knot (a line longer than
    filesource's buffer shifts later columns to garbage; see noise_table.COLUMNS)."""
    n, hold = 2 * COLUMNS + 22, 1e-9
    nl = Netlist("table columns")
    nodes = [f"x{i}" for i in range(n)]
    for i, x in enumerate(nodes):
        nl.R(f"{i}", x, "0", 1.0)
    scales = [1e-3 * (1 + i) for i in range(n)]  # amperes per unit normal, distinct per column
    amps = [SCALE * s for s in scales]  # per table integer, as circuits/builder.py sets it
    for j, c in enumerate(chunks(n)):
        nl.table_currents(f"noise{j}", nodes[c.start : c.stop], file_name(j), amps[c.start : c.stop])
    nl.save(nodes)
    nl.print_tran(nodes[:1])
    nl.transient(hold, 10 * hold, hold)
    files = noise_files(n, 10 * hold, hold, seed=1)
    raw = run_ngspice(nl.text(), files=files).raw
    times, z = _parse(files, n)
    V = np.stack([raw[x] for x in nodes], axis=1)
    want = np.stack([np.interp(raw["time"], times, z[:, i] * SCALE * scales[i]) for i in range(n)], axis=1)
    # %id(0 x) drives the current from ground into x, through 1 ohm: V = +I.
    np.testing.assert_allclose(np.abs(V), np.abs(want), rtol=1e-9, atol=1e-15)


def test_bad_tables_are_refused():
    with pytest.raises(DesignError):
        noise_files(0, 1e-6, 1e-9, 1)
    with pytest.raises(DesignError):
        noise_files(3, float("nan"), 1e-9, 1)
    with pytest.raises(DesignError, match="exceeds"):
        noise_files(1000, 1.0, 1e-9, 1)
