"""Keep freed memory in the process during CPU training (glibc ``mallopt``).

A training step frees and allocates the same large tensors every step (activations
of several MB). With glibc's defaults, allocations above its mmap threshold get
fresh pages from the kernel and the top of the heap is returned to it when freed,
so every step touches its activations' pages anew: ~5,000 page faults and ~8 ms of
kernel time per step of the main job's Zipformer on one core (issue 24). Raising
the mmap threshold to glibc's maximum (32 MiB) and the trim threshold to 1 GiB
keeps those pages in the process: ~550 faults and under 1 ms per step, about 6 %
more steps per second (``benchmarks/demo_train_speed.py --allocator``).

The price is that the process keeps up to its peak memory (plus the top pad) after
a step instead of returning it; for one training process per core that is its
working set anyway. Nothing changes on other C libraries or platforms (the call
is skipped), and values and results never depend on it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3

#: the settings, as the environment variables glibc reads at start-up (a child
#: process started with them behaves as one that called :func:`keep_freed_memory`)
SETTINGS = {"MALLOC_MMAP_THRESHOLD_": 32 * 1024 * 1024,   # glibc's largest allowed value
            "MALLOC_TRIM_THRESHOLD_": 1024 * 1024 * 1024,
            "MALLOC_TOP_PAD_": 64 * 1024 * 1024}
_PARAMS = {"MALLOC_MMAP_THRESHOLD_": M_MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": M_TRIM_THRESHOLD,
           "MALLOC_TOP_PAD_": M_TOP_PAD}

_done = False


def _libc() -> "ctypes.CDLL | None":
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # gnu_get_libc_version exists only in glibc (musl has mallopt as a no-op stub)
        libc.gnu_get_libc_version
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` to this process (once); whether glibc took them.

    A setting the user gave in the environment (``MALLOC_..._``) is left as given.
    """
    global _done
    if _done:
        return True
    libc = _libc()
    if libc is None:
        return False
    ok = True
    for name, value in SETTINGS.items():
        if name in os.environ:
            continue
        ok = bool(libc.mallopt(_PARAMS[name], ctypes.c_int(value))) and ok
    _done = ok
    return ok


def environment() -> dict[str, str]:
    """:data:`SETTINGS` as environment variables for a child process."""
    return {k: str(v) for k, v in SETTINGS.items()}
