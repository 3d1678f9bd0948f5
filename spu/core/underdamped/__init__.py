"""Second-order dynamics of the coupled-oscillator SPU (split by idea in the next commit)."""
from .propagator import *  # noqa: F401,F403
from .propagator import expm_batch, lag_sums, mode_autocov, mode_transition, position_acf  # noqa: F401
