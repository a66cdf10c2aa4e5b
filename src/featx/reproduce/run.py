"""The reproduction's run: one setup's rows, phase by phase, through featx's Python API, with
the plan (images, CNN forwards, disk, RAM, time calibrated on a few images), the cache of
finished rows and the cleanup of what no row still needs."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from featx import api, environment
from featx.backbones import get_backbone, layer_shapes
from featx.datasets import open_dataset
from featx.errors import FeatxError, InputError
from featx.images import ViewSpec
from featx.io import load_svm, read_header
from featx.io.output import save_text
from featx.reproduce.numbers import duration
from featx.reproduce.rows import PHASE, PHASES, Row, Setup, rows_of, slug

log = logging.getLogger(__name__)

GB = 1e9
# a phase's extraction time is calibrated on enough images (beyond one that pays the
# start-up) for about this many CNN forwards: with 2 images the start-up's own
# jitter (a second or so) could halve, double or zero a phase's estimate
CALIBRATION_FORWARDS = 96


def _unit(stage: str) -> str:
    """What ``stage``'s progress counts (its :attr:`featx.stages.Stage.unit`)."""
    from featx.stages import stages

    found = stages().get(stage)
    return found.unit if found is not None else "img"


class Runner:
    """Runs featx stages in this process through the Python API (one torch import for the
    whole run), timing each stage; ``bars(unit)`` gives each stage its progress bars counting
    what the stage counts (:attr:`featx.stages.Stage.unit`: a context manager yielding a
    :data:`featx.stages.Progress`, or None)."""

    def __init__(self, bars: Callable[[str], Any] | None = None, trace: str | None = None):
        self.bars = bars or (lambda unit: nullcontext(None))
        self.trace = trace or environment.get("FEATX_REPRODUCE_TRACE")
        self.times: dict[str, float] = {}  # seconds a stage, this process
        self.phases: dict[str, float] = {}  # extraction seconds a phase (acts-/sample-PHASE)

    def __call__(self, stage: str, *args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out", args[-1] if args else "")  # every call passes its output last
        if self.trace:  # for benchmarks/reproduce_scale.py: which stage runs from when
            with open(self.trace, "a") as fh:
                fh.write(json.dumps({"stage": stage, "target": Path(str(out)).name,
                                     "time": time.time()}) + "\n")
        t = time.perf_counter()
        try:
            with self.bars(_unit(stage)) as progress:
                result = getattr(api, stage.replace("-", "_"))(*args, progress=progress,
                                                                **kwargs)
        except FeatxError as exc:
            raise type(exc)(f"featx {stage} failed: {exc}") from None
        took = time.perf_counter() - t
        self.times[stage] = self.times.get(stage, 0.0) + took
        phase = re.match(r"(?:acts|sample)-([a-z0-9]+)", Path(str(out)).name)
        if stage == "extract" and phase:
            self.phases[phase[1]] = self.phases.get(phase[1], 0.0) + took
        return [str(p) for p in result] if isinstance(result, list) else result


class Reproduction:
    """One setup's rows, phase by phase, with the plan, the cleanup and the report."""

    def __init__(self, s: Setup, work: Path, only: set[str] | None = None,
                 maps_dir: Path | None = None, runner: Runner | None = None):
        self.s, self.run = s, runner or Runner()
        self.maps_dir = maps_dir  # where a few confidence maps are drawn, if given
        self.w = work / f"{s.name}-{s.key()}"
        self.rows = {r.name: r for r in rows_of(s)}
        if only:
            unknown = only - set(self.rows)
            if unknown:
                raise InputError(f"unknown row(s) {', '.join(sorted(unknown))}; rows: "
                                 f"{', '.join(self.rows)}")
            need = set()
            for name in only:
                need |= self._closure(name)
            self.rows = {k: v for k, v in self.rows.items() if k in need}
        self.base = {"backbone": s.backbone, "weights": s.weights, "dataset": s.dataset,
                     "root": s.root, "crop_boxes": "--crop-boxes" in s.extra}
        self.models: dict[str, dict[str, str]] = {}

    def _recorded(self, kind: str) -> dict:
        """What this run recorded of ``kind`` (kept in the work folder, so that a resumed run
        reports it too): ``deviations`` (settings it had to change), ``used`` (sample sizes)."""
        path = self.w / f"{kind}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _record(self, kind: str, key: str, value) -> None:
        known = self._recorded(kind)
        if known.get(key) != value:
            self.w.mkdir(parents=True, exist_ok=True)
            save_text(self.w / f"{kind}.json", json.dumps({**known, key: value}, indent=1)
                      + "\n")

    def record_times(self) -> None:
        """Add this process's stage and per-phase extraction seconds to the work folder's
        (``times.json``), so that a resumed run's report gives the time of all the work that
        made its rows, not of the part it did."""
        known = self._recorded("times")
        for kind, now in (("stages", self.run.times), ("phases", self.run.phases)):
            total = dict(known.get(kind, {}))
            for k, v in now.items():
                total[k] = total.get(k, 0.0) + v
            self._record("times", kind, total)
        self.run.times, self.run.phases = {}, {}

    @property
    def times(self) -> dict:
        """{"stages": {stage: seconds}, "phases": {phase: extraction seconds}} of the work
        that made this folder's rows (:meth:`record_times`)."""
        return self._recorded("times")

    def first_plan(self, rows: list[dict], text: str) -> tuple[list[dict], str]:
        """The plan made before the work this folder holds (``plan.json``): recorded by the
        run that starts the work, kept by every run that resumes it, so that the report puts
        the planned extraction beside the time the work took (summed over those runs), not a
        later run's fresh calibration beside it."""
        known = self._recorded("plan")
        if [r["phase"] for r in known.get("rows", [])] == [r["phase"] for r in rows]:
            return known["rows"], known["text"]
        self._record("plan", "rows", rows)
        self._record("plan", "text", text)
        return rows, text

    @property
    def deviations(self) -> list[str]:
        return list(self._recorded("deviations").values())

    @property
    def used(self) -> dict:
        return self._recorded("used")

    def deviate(self, key: str, text: str) -> None:
        self._record("deviations", key, text)

    def model_size(self, key: str, what: str, wanted: int, samples: int, dims: int) -> int:
        """``wanted`` clamped to the features a model is fitted on (a centred PCA of n samples
        has at most n - 1 components, and no more than the input's dimensions)."""
        size = max(1, min(wanted, samples - 1, dims))
        if size < wanted:
            self.deviate(key, f"{what} = {size} instead of {wanted}: its sample holds "
                              f"{samples:,} feature(s) of {dims:,} dimension(s)")
        return size

    def _closure(self, name: str) -> set[str]:
        r = self.rows[name]
        out = {name}
        for dep in (*r.join, *([r.alias] if r.alias else [])):
            out |= self._closure(dep)
        return out

    def source(self, r: Row) -> Row:
        while r.alias:
            r = self.rows[r.alias]
        return r

    def phase_of(self, r: Row) -> str:
        return self.source(r).phase

    # --- what each phase extracts -----------------------------------------------------
    def extraction(self, phase: str) -> dict:
        """The views, layers and input size ``phase`` extracts (featx.extract's settings)."""
        s, ph = self.s, PHASE[phase]
        if ph.kind == "fc":
            return {"views": f"whole,centre,jitter,crops:{s.crops}", "layers": s.fc_layer,
                    "input_size": self.size()}
        if ph.kind == "cross-layer":
            return {"views": f"whole,blocks:{s.blocks}", "layers": list(s.pairs[ph.pair]),
                    "input_size": self.size()}
        layer = s.pyramid_layers[ph.level]
        return {"views": f"pyramid:{s.scales}", "layers": layer,
                "input_size": self.size(pyramid=True)}

    def size(self, pyramid: bool = False) -> int | None:
        """--input-size; a pyramid of densely computed fc layers starts at the backbone's own
        input size at least (its fc layers need a full pool5 window)."""
        bb = get_backbone(self.s.backbone)
        size = self.s.input_size
        if pyramid and size and bb.fc_conv and size < bb.input_size:
            size = bb.input_size
        return size or None

    def acts(self, phase: str) -> dict[str, list[str]]:
        """Extract ``phase``'s activations of both splits (resuming) and fit its models."""
        s, w, ph = self.s, self.w, PHASE[phase]
        if ph.kind == "pyramid":
            layer = s.pyramid_layers[ph.level]
            pca = w / f"pca-{phase}.h5"
            if not pca.is_file():
                sample = self.run("extract", None, w / f"sample-{phase}", **self.base,
                                  **self.extraction(phase), split=s.train,
                                  sample=s.pyramid_sample)
                n = sum(len(_ids(p)) for p in sample)
                # the PCA sees pca_vectors (a 4,096-d covariance is well estimated from
                # 100,000); the GMM after it Yoo's 256,000 (128-d, cheap to hold)
                per_image = max(1, math.ceil(s.pca_vectors / max(n, 1)))
                shapes = [list(d.values())[0] for d in read_header(sample[0])["pyramid_shapes"]]
                vectors = sum(v for v, _ in shapes)
                dim = self.model_size(f"{phase}-pca", f"{phase}: the pyramid PCA's dimension",
                                      s.fv_dim, n * min(per_image, vectors), shapes[0][1])
                self._record("used", f"{phase}-pca", [n * min(per_image, vectors), n])
                self.run("fit-pca", sample, pca, layer=layer, view="pyramid", local="dense",
                         dim=dim, per_image=per_image, overwrite=True)
                shutil.rmtree(w / f"sample-{phase}")
            acts = {sp: self.run("extract", None, w / f"acts-{phase}-{sp}", **self.base,
                                 **self.extraction(phase), split=sp, project=str(pca))
                    for sp in (s.train, s.test)}
            gmm = w / f"gmm-{phase}.h5"
            if not gmm.is_file():
                n = sum(len(_ids(p)) for p in acts[s.train])
                per = sum(list(d.values())[0][0]
                          for d in read_header(acts[s.train][0])["pyramid_shapes"])
                k = min(s.components, max(1, n * per // 2))  # EM needs 2 vectors a component
                if k < s.components:
                    self.deviate(f"{phase}-gmm",
                                 f"{phase}: K = {k} instead of {s.components}: the training "
                                 f"split has only {n * per:,} pyramid vectors")
                per_image = max(1, math.ceil(s.gmm_vectors / max(n, 1)))
                self._record("used", f"{phase}-gmm", [n * min(per_image, per), n])
                self.run("fit-gmm", acts[s.train], gmm, pca=pca, components=k,
                         per_image=per_image, overwrite=True)
            self.models[phase] = {"gmm": str(gmm), "pca": str(pca)}
            if ph.guidance and any(str(a).startswith("@guidance") for r in self.rows.values()
                                       for a in r.encode.values()):
                for name, epochs in (("guidance", s.guidance_epochs), ("guidance-random", 0)):
                    path = w / f"{name}-{phase}.h5"
                    if not path.is_file():
                        scales = tuple(range(min(s.guidance_scales, s.scales)))
                        self.run("fit-guidance", acts[s.train], path,
                                 channels=s.guidance_channels, epochs=epochs, scales=scales,
                                 overwrite=True)
                    self.models[phase][name] = str(path)
            return acts
        acts = {sp: self.run("extract", None, w / f"acts-{phase}-{sp}", **self.base,
                             **self.extraction(phase), split=sp) for sp in (s.train, s.test)}
        if ph.kind == "cross-layer":
            local = s.pairs[ph.pair][0]
            m = s.subarray[ph.pair]
            pca = w / f"pca-{phase}.h5"
            if not pca.is_file():
                n = sum(len(_ids(p)) for p in acts[s.train])
                per_image = max(1, math.ceil(s.pca_vectors / max(n, 1)))
                c, h, w_ = read_header(acts[s.train][0])["layer_shapes"][local]
                rows, cols = map(int, s.blocks.split("x"))
                positions = rows * cols * max(h - m + 1, 0) * max(w_ - m + 1, 0)
                dim = self.model_size(f"{phase}-pca", f"{phase}: the cross-layer PCA's "
                                      "dimension", s.cl_dim, n * min(per_image, positions),
                                      c * m * m)
                self._record("used", f"{phase}-pca", [n * min(per_image, positions), n])
                self.run("fit-pca", acts[s.train], pca, layer=local, view="blocks",
                         local=f"subarray:{m}x{m}", dim=dim, per_image=per_image, overwrite=True)
            self.models[phase] = {"pca": str(pca)}
        return acts

    # --- rows ---------------------------------------------------------------------------
    def enc_dir(self, r: Row, split: str) -> Path:
        return self.w / f"enc-{slug(r.name)}-{split}"

    def encodings(self, r: Row, cache: dict) -> dict[str, list[str]]:
        """Row ``r``'s encoding shards of both splits: made once (a record of the paths is
        written when they are complete), remade only when deleted."""
        record = self.w / "encodings" / f"{slug(r.name)}.json"
        if record.is_file():
            paths = json.loads(record.read_text())
            if all(Path(p).is_file() for ps in paths.values() for p in ps):
                return paths
        paths = self._encode(r, cache)
        record.parent.mkdir(parents=True, exist_ok=True)
        save_text(record, json.dumps(paths) + "\n")
        return paths

    def _encode(self, r: Row, cache: dict) -> dict[str, list[str]]:
        s = self.s
        if r.join:
            parts = [self.encodings(self.source(self.rows[p]), cache) for p in r.join]
            return {sp: self.run("join", [_folder(p[sp]) for p in parts], self.enc_dir(r, sp),
                                 dtype="float16")
                    for sp in (s.train, s.test)}
        if r.phase not in cache:
            cache[r.phase] = self.acts(r.phase)
        models = self.models.get(r.phase, {})
        extra = {k: models[k] for k in ("pca", "gmm") if k in models}
        ph = PHASE[r.phase]
        if ph.kind == "cross-layer":
            extra["layers"] = list(s.pairs[ph.pair])
        if ph.kind == "fc":
            extra["fc_layer"] = s.fc_layer
            if s.fc_power is not None:
                extra["power_norm"] = s.fc_power
        args = {k: models[v[1:]] if str(v).startswith("@") else v for k, v in r.encode.items()}
        return {sp: self.run("encode", cache[r.phase][sp], self.enc_dir(r, sp), **args, **extra,
                             dtype="float16")
                for sp in (s.train, s.test)}

    def result_path(self, r: Row) -> Path:
        return self.w / "rows" / f"{slug(r.name)}.json"

    def evaluate(self, r: Row, cache: dict) -> dict:
        s = self.s
        t = time.perf_counter()
        enc = self.encodings(r, cache)
        model = self.run("train-svm", enc[s.train], self.w / f"svm-{slug(r.name)}.h5",
                         C=_c(s.C), memory_gb=s.memory_gb, overwrite=True)
        # the MPP row's PR curves (multi-label) or confusion matrix, beside its confidence maps
        plots = {"plots": str(self.maps_dir / "plots-mpp")} if r.name == "MPP" and \
            self.maps_dir else {}
        metrics = self.run("evaluate", enc[s.test], model,
                           self.w / f"metrics-{slug(r.name)}.json", memory_gb=s.memory_gb,
                           overwrite=True, **plots)
        metrics.pop("provenance", None)
        metrics.pop("plots", None)
        head = read_header(enc[s.test][0])
        result = {"metrics": metrics,
                  "dim": int(head["dim"]), "normalisation": _norm(head.get("normalisation")),
                  "C": float(load_svm(model)[2]["C"]),
                  "seconds": time.perf_counter() - t}
        path = self.result_path(r)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_text(path, json.dumps(result, indent=1) + "\n")
        return result

    def done(self, r: Row) -> bool:
        return self.result_path(self.source(r)).is_file()

    def cleanup(self, cache: dict) -> None:
        """Remove what no row still needs: a phase's activations once its rows are done, a
        row's encodings once it and every row joining it are done."""
        for phase in PHASES:
            mine = [r for r in self.rows.values() if not r.alias and not r.join
                    and r.phase == phase]
            if all(self.done(r) for r in mine):
                if PHASE[phase].maps and self.maps_dir and (self.w / "svm-mpp.h5").is_file() \
                        and any(self.w.glob(f"acts-{phase}-*")):
                    self.draw_maps()
                for d in self.w.glob(f"acts-{phase}-*"):
                    shutil.rmtree(d)
                cache.pop(phase, None)
        for r in self.rows.values():
            if r.alias:
                continue
            users = [u for u in self.rows.values() if r.name in u.join]
            if self.done(r) and all(self.done(u) for u in users):
                for d in self.w.glob(f"enc-{slug(r.name)}-*"):
                    shutil.rmtree(d)

    def draw_maps(self) -> None:
        """A few object confidence maps of the MPP row (Yoo §4.5) next to the report, drawn
        while the run that made the MPP row still has its pyramid activations."""
        phase = next(p for p in PHASES if PHASE[p].maps)
        self.run("maps", self.w / f"acts-{phase}-{self.s.test}", self.maps_dir / "confidence",
                 model=self.w / "svm-mpp.h5", gmm=self.models[phase]["gmm"], top=2, limit=4,
                 reduce="sum", overwrite=True)  # Yoo §4.5: accumulated

    def go(self) -> dict[str, dict]:
        self.w.mkdir(parents=True, exist_ok=True)
        cache: dict = {}
        results = {}
        order = sorted((r for r in self.rows.values() if not r.alias),
                       key=lambda r: (PHASES.index(r.phase), bool(r.join)))
        for r in order:
            if not self.done(r):
                log.info("== row %s", r.name)
                self.evaluate(r, cache)
                self.record_times()  # after each row: an interrupted run keeps its times
            self.cleanup(cache)
        self.record_times()
        for r in self.rows.values():
            results[r.name] = json.loads(self.result_path(self.source(r)).read_text())
        return results


def _norm(blocks) -> str:
    """A row's normalisation for the report: √+L2, L2, ... (a join: its parts' with ⊕)."""
    names = {"sqrt+l2": "√+L2", "l2": "L2", "sqrt": "√", "none": "none"}
    parts = list(dict.fromkeys(names.get(b, b) for b in blocks or []))
    return " ⊕ ".join(parts) if parts else "?"


def _ids(path: str) -> list[str]:
    return read_header(path)["ids"]


def _folder(paths: list[str]) -> str:
    folders = {str(Path(p).parent) for p in paths}
    assert len(folders) == 1, folders
    return folders.pop()


def _c(value: str) -> str | tuple[float, ...]:
    """``Setup.C`` ("auto", "1", "0.1,1,10") as featx.train_svm's ``C``."""
    return value if value == "auto" else tuple(float(v) for v in str(value).split(","))


# --- the plan -------------------------------------------------------------------------------

def plan(rep: Reproduction, calibrate: bool = True) -> list[dict]:
    """Per phase: images, CNN forwards, disk, RAM and (calibrated) time; and the peak."""

    s = rep.s
    opts = {"crop": True} if rep.base["crop_boxes"] else {}
    n = {sp: len(open_dataset(s.dataset, s.root, sp, **opts).records) for sp in (s.train, s.test)}
    images = n[s.train] + n[s.test]
    bb = get_backbone(s.backbone)
    size = s.input_size or bb.input_size
    shapes = layer_shapes(bb, size)
    phases = sorted({rep.phase_of(r) for r in rep.rows.values()}, key=PHASES.index)
    out = []
    kept = 0.0  # bytes of encodings kept across phases for joins
    for phase in phases:
        views = [ViewSpec.parse(v) for v in rep.extraction(phase)["views"].split(",")]
        row = {"phase": phase, "images": images}
        before = (dict(rep.run.times), dict(rep.run.phases))
        ph = PHASE[phase]
        per_image = s.scales if ph.kind == "pyramid" else sum(v.count() for v in views)
        extra = min(max(2, math.ceil(CALIBRATION_FORWARDS / per_image)), n[s.train] - 1)
        cal = _calibrate(rep, phase, extra) if calibrate and extra > 0 else None
        rep.run.times, rep.run.phases = before  # the plan's own extractions are not the run's
        if ph.kind == "pyramid":
            vectors = cal["vectors"] if cal else 0
            row["forwards"] = images * s.scales + min(s.pyramid_sample, n[s.train]) * s.scales
            sample = min(s.pyramid_sample, n[s.train]) * (cal["bytes"] if cal else 0)
            acts = images * vectors * s.fv_dim * 2
            enc = 2 * s.components * s.fv_dim * 2 * images * (1 + 4 + 7)  # mpp, sp, csf
            row["disk"] = max(sample, acts + enc) + kept
            row["ram"] = max(s.gmm_vectors * s.fv_dim * 4 * 3 + s.gmm_vectors * s.components * 4,
                             (cal["rss"] if cal else 0))
            kept += 2 * s.components * s.fv_dim * 2 * images
        else:
            row["forwards"] = images * per_image
            acts = images * (cal["bytes"] if cal else 0)
            enc = 0.0
            if ph.kind != "fc":
                local, guide = s.pairs[ph.pair]
                enc = images * s.cl_dim * shapes[guide][0] * 2 * 2  # CL-xxC, float16
                if ph.kept:
                    kept += enc
            row["disk"] = acts + 3 * enc + kept
            local_dim = (shapes[s.pairs[ph.pair][0]][0] * s.subarray[ph.pair] ** 2
                         if ph.kind != "fc" else 0)
            row["ram"] = max(s.pca_vectors * local_dim * 4 * 2, (cal["rss"] if cal else 0))
        row["ram"] = max(row["ram"], n[s.train] ** 2 * 8 * 3 + s.memory_gb * GB)
        row["seconds"] = images * cal["seconds"] if cal else float("nan")
        if ph.kind == "pyramid" and cal:
            row["seconds"] += min(s.pyramid_sample, n[s.train]) * cal["seconds"]
        out.append(row)
    return out


def _calibrate(rep: Reproduction, phase: str, extra: int) -> dict:
    """Seconds, stored bytes and pyramid vectors per image of ``phase``'s extraction, from
    extracting 1 and then 1 + ``extra`` images (the difference cancels model loading and
    start-up); peak RSS."""
    import resource

    s = rep.s
    rep.w.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=rep.w) as tmp:
        got = []
        for k in (1, 1 + extra):
            t = time.perf_counter()
            paths = rep.run("extract", None, Path(tmp) / f"c{k}", **rep.base,
                            **rep.extraction(phase), split=s.train, sample=k)
            got.append((time.perf_counter() - t, sum(os.path.getsize(p) for p in paths),
                        read_header(paths[0])))
    (t1, b1, _), (tn, bn, head) = got
    vectors = sum(list(d.values())[0][0] for d in head.get("pyramid_shapes", [])) or 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": max(tn - t1, 0.0) / extra, "bytes": max(bn - b1, 0) / extra,
            "vectors": vectors, "rss": rss}


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when below it: no machine's absolute path in a
    committed report."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def print_plan(rep: Reproduction, rows: list[dict]) -> tuple[float, str]:
    lines = [f"Plan for {rep.s.name} (work folder {_shown(rep.w)}):",
             f"  {'phase':<6} {'images':>7} {'CNN forwards':>13} {'disk GB':>8} {'RAM GB':>7} "
             f"{'extract':>9}"]
    for r in rows:
        lines.append(f"  {r['phase']:<6} {r['images']:>7,} {r['forwards']:>13,} "
                     f"{r['disk'] / GB:>8.2f} {r['ram'] / GB:>7.2f} "
                     f"{duration(r['seconds']):>9}")
    peak_disk = max(r["disk"] for r in rows)
    lines.append(f"  peak disk {peak_disk / GB:.2f} GB, peak RAM "
                 f"{max(r['ram'] for r in rows) / GB:.2f} GB, extraction "
                 f"{duration(sum(r['seconds'] for r in rows))} on this machine (calibrated on "
                 f"about {CALIBRATION_FORWARDS} CNN forwards a phase; fits, encodings and SVMs "
                 "come on top)")
    return peak_disk, "\n".join(lines)


