"""glibc's allocator keeps memory freed by large requests (a 6300x6300 upload: ~100 MB more RSS per request, no
plateau). Buffers above :data:`MMAP_THRESHOLD` bytes get pages of their own, returned to the system when freed, and
the heap's free top is trimmed above :data:`TRIM_THRESHOLD`: the same settings as the environment variables
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (run.sh and the Dockerfile set those), applied with
``mallopt`` so that a server started any other way gets them too."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 131072
TRIM_THRESHOLD = 131072
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds (unless the environment sets them); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    ok = True
    for env, option, value in (("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                               ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if env not in os.environ:
            ok = bool(mallopt(option, value)) and ok
    return ok
