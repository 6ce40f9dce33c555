"""Process memory: let each training step reuse the memory the previous one freed.

Every step allocates the same large buffers again: 32 MiB gradients of the inner U-Net
kernels, oneDNN's reordered copies of those kernels, activations. glibc's malloc serves
blocks above its mmap threshold with a fresh mmap and unmaps them on free, and trims freed
memory at the heap's top, so each step page-faults its memory back in: about 120,000 minor
faults (~480 MiB zeroed by the kernel) per step of the reference models at batch 1, about a
fifth of the step's time on a 2-core CPU (docs/performance.md). With one arena, no mmap
and no trimming, the heap keeps its high-water mark and the faults stop (0 per step in the
benchmark), as with tcmalloc, for ~0.1 GiB more peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest threshold it can express.


def has_glibc_malloc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def reuse_freed_memory() -> bool:
    """Tunes glibc's malloc to keep freed memory for reuse; False where it cannot (not glibc).

    Call it before TensorFlow runs its first op: threads that already own a malloc arena
    keep it, and TensorFlow starts its thread pools with its first op.
    """
    if not has_glibc_malloc():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
