"""How the chain amps' input-referred voltages move the chain's stages, for the limited stepper
(spu/core/limited_drift.py), which clips every stage: a voltage at a summer, or at an inverter
feeding that summer's array, moves the summer's output BEFORE its clamp, and an inverter's own
output clips too (an inverted copy of a railed cell or summer sits right at the swing, so its
shift acts one way only). Neither can be folded into b as RealisedSystem.amp_input does for the
linear circuit.

Per stage (circuits/amp_input.py's physics: each amp injects J = G_s e into its stage, an inverting
stage's output moves by f Rf J, f = g / (g + Rf G_s)), in units of v_unit:

    inverted copies  c = clip(-a v[index] + f_i Rf_i G_s,i e_inv / v_unit) + a v[index]
    summer stage     d = f Rf G_s e_summer / v_unit - f Rf R[:, index] c
    into the cells   u = -s R0 R[:, index] c       (a shift of b, problem units)

a = the inverters' effective gain as OutputLimits.maps fold it, R the array's entries that read
the inverted copies (max(-S, 0) for the first array, which reads x; max(S, 0) for a later one,
which reads a summer's inverted output), s the circuit's scale (problem units). c is the inverted
copies' departure from the maps' linear image; the previous stage's own output is already in v.
"""

from __future__ import annotations

import numpy as np

from spu.core.limited_drift import StageShift


def _factor(g: float, rf_g: np.ndarray) -> np.ndarray:
    """f = g / (g + Rf G_s), 1 for an ideal part."""
    return np.ones_like(rf_g) if np.isinf(g) else g / (g + rf_g)


def _inverted(B, name: str, label: str, g: float, first: bool):
    """(index, effective gain, v_unit per volt) of the inverter group `name` feeding array `label`,
    and that array's entries reading them: the negative ones of the first array (which reads x),
    the positive ones of a later array (which reads a summer's already inverted output); None where
    no inverter was built."""
    grp = B.amp_groups.get(name)
    if grp is None:
        return None
    G = np.array([B.node_conductance[s] for s in grp.nodes])
    f = _factor(g, grp.rf * G)
    S = B.stages[label].S[:, grp.index]
    reads = np.maximum(-S if first else S, 0.0)
    return grp.index, grp.gain * f, f * grp.rf * G / B.d.v_unit, reads


def stage_shifts(B, chain, g: float, scale: float) -> tuple[list[StageShift], StageShift | None]:
    """The StageShift of each summer stage in signal order, and the one into the cells (None where
    no inverter sits between the last summers and the cells)."""
    arrays, summers = chain
    shifts, tail = [], None
    for k, label in enumerate(arrays):
        inv = f"inverters {'x' if k == 0 else summers[k - 1]}"
        found = _inverted(B, inv, label, g, k == 0)
        index, a, out, reads = found if found is not None else (None, None, None, None)
        if k == len(summers):  # the last array feeds the cells
            tail = None if found is None else StageShift(None, None, inv, index, a, out, -scale * B.d.R0 * reads)
            continue
        name = f"summers {summers[k]}"
        grp = B.amp_groups[name]
        G_s = np.array([B.node_conductance[s] for s in grp.nodes])
        rff = grp.rf * _factor(g, grp.rf * G_s)
        matrix = None if found is None else -rff[:, None] * reads
        shifts.append(StageShift(name, rff * G_s / B.d.v_unit, inv if found else None, index, a, out, matrix))
    return shifts, tail
