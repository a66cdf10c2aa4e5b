"""Reproduce the papers' tables: the whole featx chain for every benchmark found, one report each.

    featx reproduce [--data DIR] [--work DIR] [--reports DIR] [--plan] [--backbone NAME]
        [--weights W] [--input-size N] [--scales S] [--only ROW[,ROW]] [--spread CONFIGS]
    featx.reproduce.reproduce(data=..., work=..., reports=...)        # the same from Python

Looks under ``data`` for VOCdevkit/VOC2007, mit67, CUB_200_2011, flowers102 and h3d
(attributes_dataset) in their standard layouts and runs, for each, every published row of Liu
et al. (CVPR 2015) and Yoo et al. (arXiv 1412.1628) that featx can compute, writing
``reports/<dataset>.md`` with the papers' numbers beside ours. With none present (no internet),
it runs the same chain on the 250 real flower photos shipped in data/flowers-demo (CC BY 2.0,
photographers in data/flowers-demo/ATTRIBUTION.txt) with the offline EfficientNet-Lite0
backbone, and says so.

Bounded resources: the work is done in phases (fc crops; conv4/conv5; conv3/conv4; the fc7
pyramid; the pool5 pyramid). Each phase extracts only the views and layers its rows read, fits
its PCA / GMM on stratified, seeded samples of the whole training split, and its activations
are deleted once its rows are evaluated; a row's encodings are deleted once it and the rows
joining it are evaluated. The SVMs stream encodings in blocks. Before any work a plan (images,
CNN forwards, disk, RAM, time calibrated on a few images) is made, and the run refuses to start
without the disk it needs (``plan_only``: make it and stop). Every stage runs through featx's
Python API in this process; a rerun resumes (finished rows are kept in
``<work>/<setup>/rows/``).

- :mod:`featx.reproduce.rows`: the settings (:class:`Setup`) and the rows;
- :mod:`featx.reproduce.run`: the run (:class:`Reproduction`), the plan;
- :mod:`featx.reproduce.report`: the report, from the template ``report.md``;
- :mod:`featx.reproduce.spread`: the reruns under other kernel paths and thread counts;
- :mod:`featx.reproduce.published`: the papers' numbers, each with its table.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from featx import environment
from featx.errors import FeatxError, InputError, OutputError
from featx.reproduce.report import write_report
from featx.reproduce.rows import OFFLINE_PAIRS, PHASES, Row, Setup, backbone_defaults
from featx.reproduce.rows import benchmarks, offline_setup, rows_of, slug
from featx.reproduce.run import GB, Reproduction, Runner, plan, print_plan
from featx.reproduce.spread import parse as parse_spread
from featx.reproduce.spread import rerun as spread_rerun
from featx.reproduce.spread import values as spread_values
from featx.stages import refuse_overlap

log = logging.getLogger(__name__)

OFFLINE_PHOTOS = Path("data") / "flowers-demo"

__all__ = ["OFFLINE_PAIRS", "PHASES", "Reproduction", "Row", "Runner", "Setup",
           "backbone_defaults", "benchmarks", "offline_setup", "plan", "print_plan",
           "reproduce", "rows_of", "setups", "slug", "write_report"]


def setups(data: Path, offline: Path, *, backbone: str | None = None, weights: str | None = None,
           input_size: int | None = None, scales: int | None = None) -> list[Setup]:
    """The benchmarks under ``data`` (or the offline run on the photos in ``offline`` when
    there is none), with the overrides applied."""
    found = benchmarks(data) or [offline_setup(offline)]
    out = []
    for setup in found:
        changes: dict[str, Any] = {k: v for k, v in (("weights", weights),
                                                     ("input_size", input_size),
                                                     ("scales", scales)) if v is not None}
        if backbone and backbone != setup.backbone:
            changes.update(backbone_defaults(backbone))
        out.append(replace(setup, **changes))
    return out


def reproduce(data: str | Path, work: str | Path, reports: str | Path, *,
              offline: str | Path | None = None, only: set[str] | None = None,
              plan_only: bool = False, backbone: str | None = None, weights: str | None = None,
              input_size: int | None = None, scales: int | None = None,
              spread: str | list[str] | None = None,
              bars: Callable[[str], Any] | None = None,
              on_plan: Callable[[str], None] | None = None) -> list[Path]:
    """Run every setup found under ``data`` and write its report into ``reports``; the report
    paths. ``offline``: the photos of the offline run (default ``data/flowers-demo``).
    ``only``: these rows and what they need. ``spread``: configurations of
    :mod:`featx.reproduce.spread` (``"capped,1-thread"``) under which the whole run is done
    again, each row's spread printed beside its number. ``bars``: progress bars per stage (see
    :class:`Runner`). ``on_plan`` hears each setup's plan text (the CLI prints it on stderr).
    """
    _check_arguments(data=data, work=work, reports=reports, offline=offline, only=only,
                     plan_only=plan_only, backbone=backbone, weights=weights,
                     input_size=input_size, scales=scales, spread=spread)
    environment.check()
    data, work, reports = Path(data).resolve(), Path(work), Path(reports)
    configs = parse_spread(spread)
    if not data.is_dir():
        raise InputError(f"--data {data} is not a folder")
    offline = Path(offline or OFFLINE_PHOTOS).resolve()
    if not offline.is_dir():
        raise InputError(f"--offline {offline} is not a folder")
    for what, folder in (("work", work), ("reports", reports)):
        if folder.exists() and not folder.is_dir():  # before any work, not at its first write
            raise OutputError(f"--{what} {folder} is a file; name a folder")
        refuse_overlap(folder, [data, offline])
    if not plan_only:  # every file it writes is checked writable before the work
        for what, folder in (("work", work), ("reports", reports)):
            _writable(folder, what)
    found = setups(data, offline, backbone=backbone, weights=weights, input_size=input_size,
                   scales=scales)
    reps = [Reproduction(setup, work, only, maps_dir=reports / f"{setup.name}-maps",
                         runner=Runner(bars)) for setup in found]  # --only checked here
    if not benchmarks(data):
        log.warning("No benchmark dataset under %s (see `make data`): running the small "
                    "OFFLINE chain on %s instead.", data,
                    "the shipped flower photos" if offline == OFFLINE_PHOTOS.resolve()
                    else f"the photos in {offline}")
    done = []
    for rep in reps:
        setup = rep.s
        try:  # an incomplete benchmark folder is named here, before any work
            rows = plan(rep)
        except FeatxError as exc:
            raise type(exc)(f"{setup.name}: {exc}") from None
        peak, text = print_plan(rep, rows)
        (on_plan or log.info)(text)
        if plan_only:
            continue
        rep.w.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(rep.w).free
        have = sum(f.stat().st_size for f in rep.w.rglob("*") if f.is_file())
        if free + have < peak:
            raise OutputError(f"{setup.name} needs about {peak / GB:.1f} GB of disk in {rep.w} "
                              f"at its peak; {free / GB:.1f} GB are free. Free space or pass "
                              "--work DIR on a larger disk.")
        rows, text = rep.first_plan(rows, text)  # a resumed run's report: the first plan
        done.append((rep, rep.go(), text, rows))
    argv = ["--data", str(data), "--offline", str(offline),
            *(["--only", ",".join(sorted(only))] if only else []),
            *(arg for flag, v in (("--backbone", backbone), ("--weights", weights),
                                  ("--input-size", input_size), ("--scales", scales))
              if v is not None for arg in (flag, str(v)))]
    for name in configs if done else []:
        log.info("--spread: the whole run again under %s, in %s (log %s)", name,
                 work / f"spread-{name}", work / f"spread-{name}.log")
        spread_rerun(name, argv, work)
    return [write_report(rep, results, reports, text,
                         spread=spread_values(results, rep, work, configs) if configs else None,
                         spread_configs=configs, plan_rows=rows)
            for rep, results, text, rows in done]


def _check_arguments(**given: Any) -> None:
    """``reproduce``'s arguments, type-strict, before any work (the Python API's: the command
    line's options arrive with these types): a path a ``str`` or ``os.PathLike``, ``only`` a
    set, list or tuple of row names, ``spread`` configuration names (a comma-separated
    ``str`` or a list of them), a number an ``int``."""
    import os

    def path(x: Any) -> bool:
        return isinstance(x, (str, os.PathLike)) and not isinstance(x, bytes)

    def names(x: Any) -> bool:
        return isinstance(x, (list, tuple, set, frozenset)) and all(
            isinstance(n, str) for n in x)

    def count(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 1

    rules = {"data": (path, False, "a folder path"), "work": (path, False, "a folder path"),
             "reports": (path, False, "a folder path"), "offline": (path, True, "a folder path"),
             "only": (names, True, "a set, list or tuple of row names"),
             "plan_only": (lambda x: isinstance(x, bool), False, "True or False"),
             "backbone": (lambda x: isinstance(x, str), True, "a backbone name"),
             "weights": (lambda x: isinstance(x, str), True, "imagenet, none or a file path"),
             "input_size": (lambda x: count(x) and x >= 32, True, "an integer >= 32"),
             "scales": (count, True, "an integer >= 1"),
             "spread": (lambda x: isinstance(x, str) or names(x), True,
                        "configuration names (a comma-separated str, or a list of them)")}
    for name, value in given.items():
        ok, optional, what = rules[name]
        if not ((value is None and optional) or ok(value)):
            raise InputError(f"{name} must be {what}, got {value!r}")


def _writable(folder: Path, what: str) -> None:
    """Refuse ``folder`` (made later, when the work writes into it) if it could not be made
    or written: its nearest existing ancestor must be a writable folder. Nothing is created
    here, so a refusal leaves nothing behind."""
    import os

    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"--{what} {folder} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--{what} {folder} cannot be written: {existing} is not writable "
                          "(a read-only file system?); name a folder featx can write")
