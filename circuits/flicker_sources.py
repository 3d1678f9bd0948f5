"""The netlist side of the op-amps' 1/f noise (circuits/flicker.py): an XSPICE `filesource` voltage
in series with each noisy op-amp's input, read from table files flicker<j>.txt written beside the
netlist (the format, chunking and 512-byte line limit of circuits/noise_table.py).

An input-referred voltage e is a time-varying offset: V(+) - V(-) at the amplifier is shifted by e.
`series` places it on the pin the op-amp has: in series with the inverting input today (the pin
then sits at V(node) - e, which an E source or the single-pole stage sees exactly as +e on the
grounded non-inverting input; the pin draws no current, so nothing else changes), or in series
with a non-inverting input (V(pin) = V(node) + e), e.g. beside an offset source.
"""

from __future__ import annotations

from spu.core.errors import DesignError

from .design import Design
from .flicker import Band, FlickerProcess, band_for
from .netlist import Netlist
from .noise_table import MAX_VALUES, chunks, file_name, knots, table_files

STEM = "flicker"


class FlickerSources:
    """Collects the noisy op-amps of one netlist, then emits their table sources and files."""

    def __init__(self, band: Band, run_s: float):
        self.band, self.run_s = band, run_s
        self.pairs: list[tuple[str, str]] = []  # (plus, minus) of each source, in table column order
        self.amps: list[str] = []

    def series(self, amp: str, node: str, inverting: bool = True) -> str:
        """The node op-amp `amp`'s input pin joins instead of `node`: a flicker source sits
        between them, so that the amplifier sees +e input-referred either way."""
        pin = f"fl_{amp}"
        self.pairs.append((node, pin) if inverting else (pin, node))
        self.amps.append(amp)
        return pin

    def emit(self, nl: Netlist) -> None:
        """One filesource instance per table chunk (after every noisy op-amp is placed)."""
        k = knots(self.run_s, self.band.step)
        if k * len(self.pairs) > MAX_VALUES:
            raise DesignError(
                f"flicker table of {k} knots x {len(self.pairs)} op-amps exceeds {MAX_VALUES} values: "
                "a shorter run or a lower flicker corner"
            )
        q = self.band.quantum
        lo, hi = self.band.edges_hz
        for j, c in enumerate(chunks(len(self.pairs))):
            nl.table_voltages(
                f"{STEM}{j}",
                self.pairs[c.start : c.stop],
                file_name(j, STEM),
                [q] * len(c),
                comment=f"1/f noise of {len(c)} op-amps: {len(self.band.rates)} OU from {lo:.4g} to {hi:.4g} Hz",
            )

    def files(self, t_stop_s: float, seed: int | None) -> dict[str, bytes]:
        """The tables of one run: knots every band.step seconds over [0, t_stop] (plus one)."""
        if not self.pairs:
            return {}
        codes = FlickerProcess(self.band, len(self.pairs), seed).codes(knots(t_stop_s, self.band.step))
        return table_files(codes, self.band.step, STEM)


def flicker_sources(design: Design, run_s: float) -> FlickerSources | None:
    """The collector for a run of run_s circuit seconds; None when there is no flicker band."""
    band = band_for(design.opamp, run_s)
    return None if band is None else FlickerSources(band, run_s)
