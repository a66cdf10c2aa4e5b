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
def faults(work):
    # page faults of 3 calls right after 3 others (each measured where its own blocks were
    # just freed), the median of 5 such counts: a call now and then finds the heap laid out
    # by others' blocks and grows it (kept: 0-1,215 faults for 3 FVs in single counts)
    for _ in range(3):
        work()
    counts = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            work()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sorted(counts)[2]
fv = lambda: fisher_vector(x, means, variances, priors)
big = lambda: torch.ones(12 << 20)  # 48 MB, as a batch's input or first activation
print(faults(fv), faults(big))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_keep_host_memory_stops_freed_blocks_faulting_in_again():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True,
                             text=True, check=True)
        return [int(n) for n in out.stdout.split()]
    (fv, big), (fv_kept, big_kept) = faults("default"), faults("keep")
    assert fv > 3000  # blocks of MBs handed back and faulted in again, each call
    assert fv_kept < fv / 10
    assert big > 3 * 10_000  # 12,288 pages of 4 KB each time
    assert big_kept < big / 10


RELEASE = """
import sys, torch
from featx.device import keep_host_memory, release_free_host_memory
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20
assert keep_host_memory()
before = rss_mb()
x = torch.ones(50 << 20)  # 200 MB, freed below the 256 MB trim threshold: kept
del x
kept = rss_mb()
assert release_free_host_memory()
print(before, kept, rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not sys.platform.startswith("linux"),
                    reason="a glibc setting, read in /proc")
def test_release_free_host_memory_hands_kept_blocks_back():
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True,
                         check=True)
    before, kept, released = map(float, out.stdout.split())
    assert kept > before + 150  # the freed 200 MB stayed in the process
    assert released < before + 50  # and went back to the system


def test_openmp_waits_passively_only_when_the_cores_are_taken(monkeypatch):
    """Issue 29.3: beside busy processes OpenMP's spinning threads slow featx below its peer;
    the policy is set before torch loads, only when other threads fill every core, never over
    the user's own setting."""
    import sys

    from featx import device

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh process (restored after)
    assert not device.wait_politely_when_busy(cpus=2, others=1.0)
    assert "OMP_WAIT_POLICY" not in device.os.environ
    assert device.wait_politely_when_busy(cpus=2, others=2.0)
    assert device.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice stands
    assert not device.wait_politely_when_busy(cpus=2, others=8.0)
    assert device.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_openmp_policy_is_left_alone_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401 - loaded: its OpenMP runtime has read the policy already

    from featx import device

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert not device.wait_politely_when_busy(cpus=1, others=50.0)
    assert "OMP_WAIT_POLICY" not in device.os.environ


def test_the_command_line_sets_the_policy_before_torch_loads(tmp_path):
    """featx run while the cores are taken (two spinning processes here) starts with passive
    OpenMP waiting; on a quiet machine the default stays (the test machine may be busy with
    other tests: only the busy case is asserted)."""
    import subprocess
    import sys

    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(
        len(__import__("os").sched_getaffinity(0)) + 1)]
    try:
        import time

        time.sleep(1.0)
        code = ("import os, sys\nfrom featx.cli import main\n"
                "try:\n    main(['layers', 'alexnet'], prog_name='featx')\n"
                "except SystemExit:\n    pass\n"
                "print('POLICY', os.environ.get('OMP_WAIT_POLICY'))")
        env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert "POLICY PASSIVE" in out
