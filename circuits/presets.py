"""Named hardware presets: the errors of real part classes as circuits.Design fields, to start from
instead of setting each number. Presets combine (an op-amp and a converter class); a later one
overrides an earlier one where both set a field, and explicit options override them all.

The figures are typical values of each part class as their datasheets give them at 25 C and +-15 V
supplies (docs/HARDWARE_PRESETS.md lists each with its source); check them against the current
datasheet of the part you mean. A "typical" offset is taken as the sigma of the per-part draw.
No preset sets gbw: the asbuilt backend has no op-amp bandwidth model (circuits/realised.py), so a
preset must run on both circuit backends; set --opamp-gbw yourself for ngspice.
"""

from __future__ import annotations

from dataclasses import dataclass

from spu.core.errors import DesignError


@dataclass(frozen=True)
class Preset:
    name: str
    about: str  # one line: the part class and what it stands for
    fields: dict  # circuits.Design fields (opamp, dac, adc as dicts of their fields)


def _opamp(offset, bias, swing, slew, noise, corner) -> dict:
    return {
        "offset": offset,
        "bias": bias,
        "swing": swing,
        "slew": slew,
        "noise_density": noise,
        "flicker_corner": corner,
    }


def _converters(bits, offset, gain_error, inl) -> dict:
    part = {"offset": offset, "gain_error": gain_error, "inl": inl}
    return {"bits_dac": bits, "bits_adc": bits, "dac": dict(part), "adc": dict(part)}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "opamp-precision",
            "precision bipolar op-amp (OPA277 / OP07 class): 10 uV offset, 0.5 nA bias, 0.8 V/us",
            {"opamp": _opamp(10e-6, 0.5e-9, 13.5, 0.8e6, 8e-9, 10.0)},
        ),
        Preset(
            "opamp-general",
            "general-purpose JFET op-amp (TL071 class): 3 mV offset, 30 pA bias, 13 V/us",
            {"opamp": _opamp(3e-3, 30e-12, 13.5, 13e6, 18e-9, 100.0)},
        ),
        Preset(
            "opamp-fast",
            "fast FET-input op-amp (AD8065 class, +-12 V supplies): 0.4 mV offset, 1 pA bias, 180 V/us",
            {"rails": 12.0, "opamp": _opamp(0.4e-3, 1e-12, 11.5, 180e6, 7e-9, 1e3)},
        ),
        Preset(
            "converter-12bit",
            "12-bit bipolar +-10 V DACs and ADCs: 2 mV offset, 0.1 % gain error, 1 LSB INL",
            _converters(12, 2e-3, 1e-3, 1.0),
        ),
        Preset(
            "converter-16bit",
            "16-bit bipolar +-10 V DACs and ADCs: 0.5 mV offset, 0.02 % gain error, 2 LSB INL",
            _converters(16, 0.5e-3, 2e-4, 2.0),
        ),
    )
}

PARTS = ("opamp", "dac", "adc")  # the Design fields that are records of their own


def merge(base: dict, over: dict) -> dict:
    """Design fields `over` on top of `base`; the parts (opamp, dac, adc) merge field by field."""
    out = dict(base)
    for key, value in over.items():
        if key in PARTS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise DesignError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def preset_fields(names) -> dict:
    """The Design fields of the presets `names`, merged in order."""
    fields: dict = {}
    for name in names:
        fields = merge(fields, preset(name).fields)
    return fields
