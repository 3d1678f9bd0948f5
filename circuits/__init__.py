"""Circuit model of the SPU: design parameters, topologies, netlist emission, component report."""

from .circuit import Circuit
from .design import Converter, Design, OpAmp
from .netlist import Netlist
from .topologies import TOPOLOGIES, build

__all__ = ["Converter", "Design", "OpAmp", "Netlist", "TOPOLOGIES", "Circuit", "build"]
