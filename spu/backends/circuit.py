"""The way from spu to circuits/ that the circuit backends share: the design, the topology names
and the ADC read-out. Only this module and the circuit backends (ngspice.py, asbuilt.py) import
circuits/, so that the device, the numeric backends and training run without the circuit layer."""

from __future__ import annotations

import numpy as np

from circuits import topologies
from circuits.amp_input import CELLS  # noqa: F401  (the cells' op-amp group, for flicker_drive.py)
from circuits.converters import adc_read
from circuits.design import Converter, Design, OpAmp


def checked_design(design) -> Design:
    """The checked circuits.Design of an SPU (default Design())."""
    return (design or Design()).check()


def design_from_fields(fields: dict | None) -> Design:
    """circuits.Design from a dict of its fields (opamp may be a dict of OpAmp's), checked; None: the
    default. A field Design does not have raises TypeError naming the fields it has."""
    if fields is None:
        return Design()
    fields = dict(fields)
    for key, part in (("opamp", OpAmp), ("dac", Converter), ("adc", Converter)):
        if isinstance(fields.get(key), dict):
            try:
                fields[key] = part(**fields[key])
            except TypeError as exc:
                known = ", ".join(part.__dataclass_fields__)
                raise TypeError(f"bad circuit design {key} {fields[key]}: {exc}; fields are {known}") from None
    try:
        return Design(**fields).check()
    except TypeError as exc:
        known = ", ".join(Design.__dataclass_fields__)
        raise TypeError(f"bad circuit design {fields}: {exc}; fields are {known}") from None


def check_topology(topology: str) -> None:
    """DesignError (a ThermospiceError) naming the choices where `topology` names none."""
    topologies.get(topology)


def timing_layout(topology: str) -> str:
    """The array layout (spu/timing.resistor_count kind) the timing model counts for `topology`."""
    return topologies.get(topology).layout


def second_order(topology: str | None) -> bool:
    """Whether `topology` builds coupled-oscillator cells (underdamped dynamics)."""
    return topology is not None and topologies.get(topology).second_order


def adc(volts: np.ndarray, design: Design) -> np.ndarray:
    """Read voltages through the ADCs (one per state node, the last axis): their offset, gain and
    INL, clipped to full scale and rounded to bits_adc levels when bits_adc is set."""
    return adc_read(volts, design)
