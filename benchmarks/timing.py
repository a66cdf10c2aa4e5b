"""Timing shared by the benchmarks: repeat, take the best, report the spread."""

from __future__ import annotations

import time


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(best, worst) seconds of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), max(times)
