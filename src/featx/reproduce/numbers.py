"""The numbers a reproduction reports, said once: a row's result (:func:`ours`) and a time
(:func:`duration`) -- shared by the plan (run.py), the report and the spread."""

from __future__ import annotations

import math


def ours(result: dict) -> float:
    """A row's number: its mAP (multi-label) or top-1, in percent."""
    m = result["metrics"]
    return 100 * (m["mAP"] if "mAP" in m else m["top1"])


def duration(seconds: float) -> str:
    """Seconds below a minute, minutes below an hour, else hours: a plan's 3 minutes is not
    0.00 h."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"
