"""How much the reproduction's numbers move with the CPU's kernel paths and the thread count.

The same run on the same machine is bitwise the same; another processor picks other kernels
and another thread count splits reductions otherwise, and a near-tie somewhere in the chain can
then be decided the other way. ``featx reproduce --spread capped,1-thread`` reruns the whole
reproduction, in a fresh work folder of its own for each configuration (``<work>/spread-NAME``,
resumable like the main run), in a child process with the environment below, and the report
prints each row's spread (max - min over this run and those reruns) beside its number:

- ``capped``: ``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41`` -- torch's and oneDNN's
  portable kernels, what a CPU without AVX2 or AVX-512 runs;
- ``1-thread``: ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1`` -- every reduction on one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from featx.errors import FeatxError, InputError
from featx.reproduce.numbers import ours

CONFIGS: dict[str, dict[str, str]] = {
    "capped": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "1-thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
# rows known to move by more than one test image, and why (said in the report)
WHY = {
    "Scheme 2 (trained guidance)":
        "its guidance layer is trained by minibatch AdamW, whose trajectory magnifies any "
        "rounding difference: the same input on 1 thread instead of 2 ends at a guidance "
        "29.5% away (relative L2; reports/benchmarks/guidance-stability.txt), another model, "
        "not a rounding; read it as its number ± its spread",
}


def parse(text: str | list[str] | None) -> list[str]:
    """The configuration names of ``--spread`` (comma-separated), checked before any work."""
    if text is None:
        return []
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)
             if n.strip()]
    if not names:
        raise InputError(f"--spread takes configuration names, got {text!r}; known: "
                         f"{', '.join(CONFIGS)} (bare --spread: all of them)")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise InputError(f"unknown --spread configuration(s) {', '.join(unknown)}; known: "
                         f"{', '.join(CONFIGS)}")
    return list(dict.fromkeys(names))


def rerun(name: str, argv: list[str], work: Path) -> None:
    """``featx reproduce`` with ``argv`` (the main run's settings, no --spread) in a child
    process under configuration ``name``, into ``work/spread-NAME``; its log beside it."""
    folder = work / f"spread-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    log = work / f"spread-{name}.log"
    env = {**os.environ, **CONFIGS[name]}
    cmd = [sys.executable, "-m", "featx", "-q", "reproduce", *argv, "--work", str(folder),
           "--reports", str(work / f"spread-{name}-reports")]
    with open(log, "w") as fh:
        code = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise FeatxError(f"the --spread rerun under {name} ({_env(name)}) exited {code}: "
                         f"{last[-1] if last else 'no output'} (log: {log}); rerun the same "
                         "command to resume it")


def _env(name: str) -> str:
    return " ".join(f"{k}={v}" for k, v in CONFIGS[name].items())


def values(results: dict[str, dict], rep, work: Path, names: list[str]) -> dict[str, dict]:
    """{row: {"min", "max", "runs": {config: value}}} over this run (``results``, as
    ``ours`` reads them) and each configuration's rerun of the same setup."""
    out: dict[str, dict] = {}
    for row, result in results.items():
        runs = {"this machine": ours(result)}
        source = rep.source(rep.rows[row])
        for name in names:
            path = work / f"spread-{name}" / rep.w.name / rep.result_path(source).relative_to(
                rep.w)
            if not path.is_file():
                raise FeatxError(f"the --spread rerun under {name} has no result for {row} "
                                 f"({path})")
            runs[name] = ours(json.loads(path.read_text()))
        out[row] = {"min": min(runs.values()), "max": max(runs.values()), "runs": runs}
    return out


def describe(names: list[str]) -> str:
    """The configurations, for the report's text."""
    return "; ".join(f"{n}: {_env(n)}" for n in names)
