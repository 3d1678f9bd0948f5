"""Circuit model of the SPU: design parameters, topologies, netlist emission, component report."""
from .design import Design, OpAmp
from .netlist import Netlist
from .topologies import TOPOLOGIES, Circuit, build

__all__ = ["Design", "OpAmp", "Netlist", "TOPOLOGIES", "Circuit", "build"]
