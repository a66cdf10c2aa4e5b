"""featx.device: the host allocator setting the command line makes at start."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
from featx.device import keep_host_memory
from featx.encoders import fisher_vector
if sys.argv[1] == "keep":
    assert keep_host_memory()
torch.manual_seed(0)
x, means, variances = torch.randn(4410, 128), torch.randn(256, 128), torch.rand(256, 128) + 0.5
priors = torch.full((256,), 1 / 256)
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        fisher_vector(x, means, variances, priors)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(faults())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_keep_host_memory_stops_freed_blocks_faulting_in_again():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout)
    default, kept = faults("default"), faults("keep")
    assert default > 3000  # blocks of MBs handed back and faulted in again, each call
    assert kept < default / 10
