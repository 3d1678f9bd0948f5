"""Keep big tensors on the heap: glibc malloc tuning for processes that train with TNGD.

On glibc, tensors over 32 MB are mmapped and handed back to the OS on every free, so every step
pays the page faults again (U^T of the digits CNN at b=64 is 43 MB: 3-5x slower). Either reuse an
(m, N) buffer (``compute_curvature(out=...)``, as TNGD does) or call ``tune_glibc_malloc()`` once
per process, which has the effect of ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824`` (the
process then keeps its peak heap instead of returning it to the OS).
"""

from __future__ import annotations

import ctypes


def tune_glibc_malloc(trim_threshold: int = 1 << 30) -> bool:
    """mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, trim_threshold) for this process.

    Big tensors then come from the heap and freed memory is kept for the next step instead of
    being unmapped and faulted in again. Process-wide and irreversible in practice; affects only
    later allocations. Returns False (doing nothing) where the C library has no working mallopt.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
