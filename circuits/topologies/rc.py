"""The build shared by every first-order (RC cell) topology: scale, place, add noise, check the
open cells, finish the transient. A subclass of RCTopology only places its elements."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from spu.core.errors import DesignError

from ..amp_input import AmpInput
from ..builder import Builder
from ..circuit import Circuit, check_seed, check_x0, finish_transient
from ..design import Converter, Design
from ..flicker_sources import flicker_sources
from ..noise_table import MAX_VALUES, table_values
from ..scaling import check_open, check_quantised, choose_scale, exact_solution, open_error, scaled
from .base import Topology


class RCTopology(Topology):
    """tau dx/dt = -(A x - b) + noise with V(x_i) = v_unit*x_i, one RC integrator cell per x_i."""

    def form(self, problem):
        """The problem form this topology builds from; DesignError where the pairing is impossible."""
        raise NotImplementedError

    def direct_coefficients(self, form) -> tuple[str, np.ndarray]:
        """(name, values) of the coefficients programmed directly as R0*s/|c|: what
        circuits/scaling.choose_scale fits into the resistor range (arrays that autorange on
        their own do not count)."""
        raise NotImplementedError

    def place(self, B: Builder, form, x0: np.ndarray):
        """Place the elements realising `form` (already scaled); returns (state nodes, AsBuilt)."""
        raise NotImplementedError

    def build(
        self,
        problem,
        design: Design,
        *,
        x0=None,
        kappa0: float = 0.0,
        t: float = 50.0,
        title: str | None = None,
        seed: int | None = None,
        points: int = 200,
        noise: str = "table",
        builder: type[Builder] = Builder,
        **options,
    ) -> Circuit:
        if options:
            raise DesignError(f"topology {self.name!r} takes no options, got {', '.join(sorted(options))}")
        if not (isinstance(kappa0, (int, float)) and np.isfinite(kappa0) and kappa0 >= 0):
            raise DesignError(f"kappa0 must be a finite number >= 0, got {kappa0!r}")
        if not (isinstance(t, (int, float)) and np.isfinite(t) and t > 0):
            raise DesignError(f"analog time t must be a finite number > 0 (in tau), got {t!r}")
        form = self.form(problem)
        x0 = check_x0(x0, form.n)
        scale = choose_scale(form, self.direct_coefficients(form), design)
        s = scale.s
        circuit_form = scaled(form, s)

        def assemble(d: Design, kappa: float, label: str):
            B = builder(d, label)
            B.record.scale, B.record.step = s, scale.step
            if s != 1.0:
                B.nl.comment(
                    f"scaled: the circuit realises (A/{s!r}) x = b/{s!r}; one problem tau is {s!r} circuit tau"
                )
            B.nl.comment(f"topology {self.name}: tau dx/dt = -(A x - b), state V(x_i) = {d.v_unit!r} V * x_i")
            B.flicker = flicker_sources(d, t * (s * d.tau)) if B.emits_text else None
            xs, as_built = self.place(B, circuit_form, x0)
            if self.chain is not None and not d.opamp.clean:
                B.amp_map = AmpInput(B, self.chain, circuit_form.n)
                errors = B.amp_map.errors(B.record.opamp_offsets, d.opamp.bias)
                B.record.input_errors.update(errors)
                as_built.b = sum(errors.values(), as_built.b)  # the realised b carries them
            B.hold_outputs(x0)
            # Noise hold and kappa0 are the problem's: the hold is s times longer in circuit tau, and
            # kappa0/s keeps the stationary covariance kappa0 A^-1 (the circuit's matrix is A/s).
            B.noise_hold_tau = s * d.hold_for(form.eig_extremes()[1]) if kappa > 0 or d.temperature else None
            B.noise_mode = _noise_mode(noise, B, d, t * s)
            B.noise_sources(B.noise_nodes, kappa / s)
            B.record.johnson_kappa = B.johnson_kappa(B.noise_nodes)
            if B.flicker is not None:
                B.flicker.emit(B.nl)
                B.record.flicker = B.flicker
            return B, xs, as_built

        B, xs, as_built = assemble(design, kappa0, title or f"thermospice {self.name} SPU, n={form.n}")
        if B.record.open_count() or B.record.columns_dropped:
            err = open_error(_nominal(design, assemble, B, as_built), exact_solution(form))
            check_open(B.record, err, design, scale.advice)
        check_quantised(B.record, as_built, design)
        nl = B.nl
        finish_transient(nl, design, xs, xs, t, points, seed, B.record, fastest_rate=form.eig_extremes()[1] / s)
        return Circuit(
            self.name,
            nl,
            xs,
            design,
            B.record,
            as_built,
            form.n,
            scale=s,
            realised=circuit_form,
            seed=check_seed(seed),
            builder=B,
            programmed_arrays=self.programmed_arrays,
        )


def lam_array(B: Builder, lam: float, n: int, sums, xs) -> np.ndarray:
    """lam as a resistor R0/lam from each cell to its own summing node; the as-built lam per cell."""
    st = B.array("L", np.full(n, lam), sums, xs, [None] * n)  # diagonal: no n x n matrix
    return B.d.R0 * st.S


def _nominal(design: Design, assemble, B: Builder, as_built):
    """The as-built system with no tolerance, quantisation, op-amp input error or converter error:
    only the open cells remain (the offsets, bias and DAC errors are in the as-built b, and would
    otherwise count as open-cell error)."""
    d = design
    clean_parts = d.opamp.offset == 0 and d.opamp.bias == 0 and d.dac.clean
    if d.tol_r == 0 and d.tol_c == 0 and d.bits_r is None and d.bits_dac is None and clean_parts:
        return as_built
    nominal = d.with_(
        tol_r=0.0,
        tol_c=0.0,
        bits_r=None,
        bits_dac=None,
        temperature=None,
        opamp=replace(d.opamp, offset=0.0, bias=0.0),
        dac=Converter(),
    )
    return assemble(nominal, 0.0, "nominal")[2]


def _noise_mode(noise: str, B: Builder, d: Design, t_circuit: float) -> str:
    """The requested noise mode, or "held" where a table would exceed noise_table.MAX_VALUES."""
    if noise == "table" and B.noise_hold_tau is not None:
        # Sources: at most one per node with noise (cells plus summing nodes for Johnson noise).
        upper = len(B.noise_nodes) + (len(B.node_conductance) if d.temperature else 0)
        if table_values(upper, t_circuit * d.tau, B.noise_hold_tau * d.tau) > MAX_VALUES:
            return "held"
    return noise
