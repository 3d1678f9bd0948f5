"""Matrix -> circuit. Every topology realises tau dx/dt = -(A x - b) + noise with V(x_i) = v_unit*x_i
(the oscillator: its second-order counterpart). One module per topology, one object per module:

* ``ideal``       behavioural reference for any SPD A (ideal.py)
* ``dense``       op-amp integrators, n^2 resistors, for any SPD A (dense.py)
* ``crossbar``    the paper's J, H, J^T arrays for A = J^T H J + lam I (crossbar.py)
* ``factored``    U^T and U arrays for A = lam I + U U^T (factored.py)
* ``oscillator``  RLC resonator cells (oscillator.py; the circuit in circuits/oscillator.py)

This registry is the one place a topology is found by name: code elsewhere asks the object
(circuits/topologies/base.Topology), never compares the name. It holds every module of this
package that defines TOPOLOGY, so adding a topology is adding its module (and its test). ``build(problem, topology, design,
...)`` returns a Circuit: the netlist plus the as-built (quantised, toleranced) system that the
component report and the tests use.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

from spu.core.errors import DesignError

from ..builder import Builder
from ..circuit import Circuit
from ..design import Design
from .base import Topology


def _discover() -> dict[str, Topology]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        topology = getattr(import_module(f"{__name__}.{info.name}"), "TOPOLOGY", None)
        if topology is not None:
            found.append(topology)
    found.sort(key=lambda t: t.rank)
    registry = {t.name: t for t in found}
    if len(registry) != len(found) or len({t.rank for t in found}) != len(found):
        raise RuntimeError(f"topology names and ranks must be unique: {[(t.name, t.rank) for t in found]}")
    return registry


_REGISTRY = _discover()
TOPOLOGIES = tuple(_REGISTRY)  # the names, in the order of --topology's choices

NOISE_MODES = ("table", "held")


def find(name) -> Topology | None:
    """The topology called `name`, None if there is none."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def get(name) -> Topology:
    """The topology called `name`; DesignError naming the choices if there is none."""
    topology = find(name)
    if topology is None:
        raise DesignError(f"unknown topology {name!r}; choose one of {', '.join(TOPOLOGIES)}")
    return topology


def choices(listing: str) -> list[str]:
    """The names in one command-line list ("train", "asbuilt"; see Topology.listed), in its order."""
    members = [t for t in _REGISTRY.values() if listing in t.listed]
    return [t.name for t in sorted(members, key=lambda t: t.listed[listing])]


def is_second_order(name: str | None) -> bool:
    """Whether the named topology (None: none chosen) has second-order (RLC) cells."""
    return name is not None and get(name).second_order


def build(
    problem,
    topology: str,
    design: Design | None = None,
    *,
    x0=None,
    kappa0: float = 0.0,
    t: float = 50.0,
    title: str | None = None,
    seed: int | None = None,
    points: int = 200,
    noise: str = "table",
    builder: type[Builder] = Builder,
    **topology_options,
) -> Circuit:
    """Build the circuit for `problem` and set up a transient of t (in tau) from x0.

    kappa0: programmable noise level (0 = off). design.temperature adds Johnson noise.
    seed: random seed of the noise; the same seed gives the same run.
    points: output step count (ngspice still writes every internal time point).
    noise: "table" (default): the noise comes from table files (Circuit.files()) at ~1 time point
        per hold; "held": TRRANDOM sources (~5-6 points per hold), the netlist then runs on its own.
        A table beyond noise_table.MAX_VALUES falls back to "held" (Circuit.noise_mode says which).
        The oscillator topology always uses held noise.
    builder: the Builder class placing the elements (circuits/realised.py keeps values, no text).
    topology_options: the oscillator's oscillator=, v0=, inductors=; the others take none."""
    if noise not in NOISE_MODES:
        raise DesignError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
    design = (design or Design()).check()
    return get(topology).build(
        problem,
        design,
        x0=x0,
        kappa0=kappa0,
        t=t,
        title=title,
        seed=seed,
        points=points,
        noise=noise,
        builder=builder,
        **topology_options,
    )


__all__ = ["NOISE_MODES", "TOPOLOGIES", "Topology", "build", "choices", "find", "get", "is_second_order"]
