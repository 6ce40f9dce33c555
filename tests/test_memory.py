"""The allocator settings behind --reuse_memory: freed memory is reused, not faulted back in."""

import subprocess
import sys

import pytest

from pix2pix_tf.training.memory import has_glibc_malloc

pytestmark = pytest.mark.skipif(not has_glibc_malloc(), reason="glibc malloc settings")

# Allocates and frees a 64 MiB block five times (as a step's gradients are) and prints the
# page faults that cost: glibc's default mmaps such a block afresh each time.
_ALLOCATE_FIVE_TIMES = """
import resource, sys
from pix2pix_tf.training.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
block = bytearray(64 << 20)
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    block = bytearray(64 << 20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", _ALLOCATE_FIVE_TIMES, mode], capture_output=True, text=True,
                            timeout=60, check=True)
    return int(result.stdout)


def test_reused_memory_is_not_faulted_in_again():
    pages = 5 * (64 << 20) // 4096
    assert _faults("system") > pages // 2  # The default: every block is fresh memory.
    assert _faults("reuse") < pages // 50
