"""Reproduce the papers' tables: the whole featx chain for every benchmark found, one report each.

    python scripts/reproduce.py [--data DIR] [--work DIR] [--reports DIR] [--plan]
        [--backbone NAME] [--weights W] [--input-size N] [--scales S] [--only ROW[,ROW]]

Looks under --data (default $FEATX_DATA, else data/) for VOCdevkit/VOC2007, mit67,
CUB_200_2011, flowers102 and h3d (attributes_dataset) in their standard layouts and runs, for
each, every published row of Liu et al. (CVPR 2015) and Yoo et al. (arXiv 1412.1628) that
featx can compute, writing reports/<dataset>.md with the papers' numbers beside ours. With none
present (no internet), it runs the same chain on the 250 real flower photos shipped in
data/flowers-demo (CC BY 2.0, photographers in data/flowers-demo/ATTRIBUTION.txt) with the
offline EfficientNet-Lite0 backbone, and says so.

Bounded resources: the work is done in phases (fc crops; conv4/conv5; conv3/conv4; the fc7
pyramid; the pool5 pyramid). Each phase extracts only the views and layers its rows read,
fits its PCA / GMM on stratified, seeded samples of the whole training split, and its
activations are deleted once its rows are evaluated; a row's encodings are deleted once it
and the rows joining it are evaluated. The SVMs stream encodings in blocks (train-svm
--memory). Before any work a plan (images, CNN forwards, disk, RAM, time calibrated on a few
images) is printed, and the run refuses to start without the disk it needs (--plan: print it
and stop). Every stage runs through the `featx` command line in this process; a rerun resumes
(finished rows are kept in <work>/<setup>/rows/).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

GB = 1e9
TRACE = bool(os.environ.get("FEATX_REPRODUCE_TRACE"))


@dataclass
class Setup:
    name: str
    dataset: str
    root: Path
    train: str
    test: str
    backbone: str = "alexnet"
    weights: str = "imagenet"
    input_size: int | None = None
    # cross-layer pairs: the paper's conv4->conv5 ("45") and conv3->conv4 ("34")
    pairs: dict = field(default_factory=lambda: {"45": ("conv4", "conv5"),
                                                 "34": ("conv3", "conv4")})
    subarray: dict = field(default_factory=lambda: {"45": 3, "34": 3})
    fc_layer: str = "fc7"
    pyramid_layers: tuple = ("fc7", "pool5")  # MPP's layer, and the second of MPP (FC7, Pool5)
    scales: int = 7
    cl_dim: int = 500
    fv_dim: int = 128
    components: int = 256
    pca_vectors: int = 100_000  # local features the cross-layer PCA is fitted on
    gmm_vectors: int = 256_000  # as Yoo
    pyramid_sample: int = 256  # images whose unprojected pyramids the pyramid PCA sees
    crops: int = 5  # AP50: 5 x 5 crops and their mirrors
    guidance_channels: int = 64  # scheme 2: K of the trained guidance layer
    guidance_epochs: int = 30
    # scheme 2 trains on the smallest 6 of 7 scales: fit-guidance holds its training vectors in
    # memory (n x 1,917 regions x 128-d in float16 = 2.5 GB for VOC07 trainval; all 7 scales,
    # 4,417 regions, would be 5.7 GB on top of the stage's own)
    guidance_scales: int = 6
    C: str = "auto"
    # Liu §4.1: "For all datasets except H3D, we set M = N = 2 and we set M = 2, N = 1 for H3D"
    blocks: str = "2x2"
    # the fc baselines' normalisation: None is their paper's (L2 alone, Yoo et al. Table 2);
    # True adds the signed square root, as featx did before issue 27
    fc_power: bool | None = None
    memory_gb: float = 2.0
    extra: list = field(default_factory=list)
    note: str = ""

    def key(self) -> str:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()
             if k not in ("note", "name")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def benchmarks(data: Path) -> list[Setup]:
    found = []
    if (data / "VOCdevkit" / "VOC2007" / "ImageSets").is_dir():
        found.append(Setup("voc07", "voc07", data / "VOCdevkit" / "VOC2007", "trainval", "test"))
    if (data / "mit67" / "TrainImages.txt").is_file():
        found.append(Setup("mit67", "mit67", data / "mit67", "train", "test"))
    if (data / "CUB_200_2011" / "images.txt").is_file():
        found.append(Setup("cub200", "cub200", data / "CUB_200_2011", "train", "test",
                           extra=["--crop-boxes"]))
    if (data / "flowers102" / "setid.mat").is_file():
        found.append(Setup("flowers102", "flowers102", data / "flowers102", "trainval", "test"))
    if (data / "attributes_dataset" / "train" / "labels.txt").is_file():
        found.append(Setup("h3d", "h3d", data / "attributes_dataset", "train", "test",
                           blocks="2x1"))
    return found


# The offline backbone's default cross-layer pair (see docs/reproduce.md, "the offline pair")
OFFLINE_PAIRS = {"45": ("stage6", "stage7"), "34": ("stage4", "stage5")}


def offline_setup(repo: Path) -> Setup:
    """The offline run: the shipped flower photos with the offline backbone. Its settings were
    chosen on the disjoint 500-photo development set (benchmarks/real_photos.py; the table
    in docs/reproduce.md, "Offline defaults")."""
    return Setup(
        "flowers-demo", "folder", repo / "data" / "flowers-demo", "train", "test",
        backbone="efficientnet_lite0", input_size=224, pairs=dict(OFFLINE_PAIRS),
        subarray={"45": 3, "34": 5}, fc_layer="pool", pyramid_layers=("head", "stage7"),
        scales=3, cl_dim=128, fv_dim=32, components=16, pca_vectors=20_000, gmm_vectors=40_000,
        pyramid_sample=100, crops=3, guidance_channels=16,
        note="Small offline run: no benchmark dataset was found, so this is the chain on 250 "
             "real photos shipped in data/flowers-demo (5 flower classes, 30 training + 20 "
             "test photos a class, from TensorFlow's flower_photos, CC BY 2.0: the "
             "photographers are credited in data/flowers-demo/ATTRIBUTION.txt) with the "
             "offline EfficientNet-Lite0 backbone at its own 224x224 input and preprocessing. "
             "The papers report no numbers for it; with 100 test photos one photo is one "
             "point, so rows closer than a few points are not told apart. Layer names "
             "stand in for the paper's: 'CL-45' is the pair stage6->stage7, 'CL-34' "
             "stage4->stage5, fc7 is `pool`, the pyramid is `head` (and `stage7` for the "
             "'Pool5' part), AP50 uses 3x3 crops.")


@dataclass
class Row:
    name: str
    phase: str = ""
    encode: list = field(default_factory=list)
    join: tuple = ()
    alias: str = ""


def rows_of(s: Setup) -> list[Row]:
    """Every row featx computes for setup ``s``, in phase order."""
    single = "blocks" if s.dataset == "mit67" else "whole"  # Liu Table 7's setting
    cl = ["--method", "cross-layer", "--views"]
    rows = [
        Row("CNN-Global", "fc", ["--method", "global"]),
        Row("CNN-Jitter", "fc", ["--method", "jitter"]),
        Row("AP10", alias="CNN-Jitter"),
        Row("Alex-FC7", "fc", ["--method", "centre"]),
        Row("AP50", "fc", ["--method", "crops"]),
        Row("CL-45", "cl45", [*cl, "whole"]),
        Row("CL-45F", "cl45", [*cl, "blocks"]),
        Row("CL-45C", "cl45", [*cl, "whole,blocks"]),
        Row("CL + CNN-Global", "cl45", join=("CL-45C", "CNN-Global")),
        Row("CL + CNN-Jitter", "cl45", join=("CL-45C", "CNN-Jitter")),
        Row("Direct Max", "cl45", ["--method", "max", "--views", single]),
        Row("Direct Sum-sqrt", "cl45", ["--method", "sum-sqrt", "--views", single]),
        Row("SPP", "cl45", ["--method", "spp", "--views", single]),
        Row("CL-single", alias="CL-45F" if single == "blocks" else "CL-45"),
        Row("Original", alias="CL-single"),
        # Liu §4.3.3's sign(P) as it is; and read back at unit L2 norm (featx's --quantize sign)
        Row("Sign-quantised", "cl45", [*cl, single, "--quantize", "sign-raw"]),
        Row("Sign-quantised (unit norm)", "cl45", [*cl, single, "--quantize", "sign"]),
        Row("CL-34", "cl34", [*cl, "whole"]),
        Row("CL-34F", "cl34", [*cl, "blocks"]),
        Row("CL-34C", "cl34", [*cl, "whole,blocks"]),
        Row("MPP", "pyr1", ["--method", "mpp"]),
        Row("NFK", "pyr1", ["--method", "nfk"]),
        Row("CSF", "pyr1", ["--method", "csf"]),
        Row("MPP + SP", "pyr1", ["--method", "mpp-sp"]),
        # Liu et al. 2016, scheme 2: cross-layer pooling of the fc pyramid's region features
        # under a trained guidance layer, and under the same layer untrained (the control)
        Row("Scheme 2 (trained guidance)", "pyr1", ["--method", "cross-layer-guided",
                                                     "--guidance", "@guidance"]),
        Row("Scheme 2 (random guidance)", "pyr1", ["--method", "cross-layer-guided",
                                                    "--guidance", "@guidance-random"]),
        Row("MPP (Pool5)", "pyr2", ["--method", "mpp"]),
        Row("MPP (FC7, Pool5)", "pyr2", join=("MPP", "MPP (Pool5)")),
    ]
    return [r for r in rows if r.phase != "cl34" or "34" in s.pairs]


PHASES = ("fc", "cl45", "cl34", "pyr1", "pyr2")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


class Runner:
    """Runs featx commands in this process (one torch import for the whole run), timing each
    stage and returning the paths each command printed."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.times: dict[str, float] = {}

    def featx(self, *args) -> list[str]:
        import click

        from featx.cli import main as cli

        stage = str(args[0])
        if TRACE:  # for benchmarks/reproduce_scale.py: which stage runs from when
            target = Path(str(args[args.index("-o") + 1])).name if "-o" in args else ""
            print(f"== stage {stage} {target} {time.time():.3f}", file=sys.stderr, flush=True)
        out = io.StringIO()
        t = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out):
                cli.main([*(["-q"] if self.quiet else []), *map(str, args)], prog_name="featx",
                         standalone_mode=False)
        except click.ClickException as exc:
            sys.exit(f"Error: featx {stage} failed: {exc.format_message()}")
        self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t
        return out.getvalue().split()


class Reproduction:
    """One setup's rows, phase by phase, with the plan, the cleanup and the report."""

    def __init__(self, s: Setup, work: Path, only: set[str] | None, quiet: bool,
                 maps_dir: Path | None = None):
        self.s, self.run = s, Runner(quiet)
        self.maps_dir = maps_dir  # where a few confidence maps are drawn, if given
        self.w = work / f"{s.name}-{s.key()}"
        self.rows = {r.name: r for r in rows_of(s)}
        if only:
            unknown = only - set(self.rows)
            if unknown:
                sys.exit(f"Error: unknown row(s) {', '.join(sorted(unknown))}; rows: "
                         f"{', '.join(self.rows)}")
            need = set()
            for name in only:
                need |= self._closure(name)
            self.rows = {k: v for k, v in self.rows.items() if k in need}
        self.base = ["--backbone", s.backbone, "--weights", s.weights, "--dataset", s.dataset,
                     "--root", s.root, *s.extra]
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
            (self.w / f"{kind}.json").write_text(json.dumps({**known, key: value}, indent=1)
                                                 + "\n")

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
    def extraction(self, phase: str) -> list:
        s = self.s
        if phase == "fc":
            return ["--views", f"whole,centre,jitter,crops:{s.crops}", "--layers", s.fc_layer,
                    *self.size()]
        if phase in ("cl45", "cl34"):
            return ["--views", f"whole,blocks:{s.blocks}", "--layers",
                    ",".join(s.pairs[phase[2:]]), *self.size()]
        layer = s.pyramid_layers[0 if phase == "pyr1" else 1]
        return ["--views", "pyramid", "--scales", s.scales, "--layers", layer,
                *self.size(pyramid=True)]

    def size(self, pyramid: bool = False) -> list:
        """--input-size; a pyramid of densely computed fc layers starts at the backbone's own
        input size at least (its fc layers need a full pool5 window)."""
        from featx.backbones import get_backbone

        bb = get_backbone(self.s.backbone)
        size = self.s.input_size
        if pyramid and size and bb.fc_conv and size < bb.input_size:
            size = bb.input_size
        return ["--input-size", size] if size else []

    def acts(self, phase: str) -> dict[str, list[str]]:
        """Extract ``phase``'s activations of both splits (resuming) and fit its models."""
        s, w = self.s, self.w
        if phase.startswith("pyr"):
            layer = s.pyramid_layers[0 if phase == "pyr1" else 1]
            pca = w / f"pca-{phase}.h5"
            if not pca.is_file():
                sample = self.run.featx("extract", *self.base, *self.extraction(phase),
                                        "--split", s.train, "--sample", s.pyramid_sample,
                                        "-o", w / f"sample-{phase}")
                n = sum(len(_ids(p)) for p in sample)
                # the PCA sees pca_vectors (a 4,096-d covariance is well estimated from
                # 100,000); the GMM after it Yoo's 256,000 (128-d, cheap to hold)
                per_image = max(1, math.ceil(s.pca_vectors / max(n, 1)))
                from featx.io import read_header

                shapes = [list(d.values())[0] for d in read_header(sample[0])["pyramid_shapes"]]
                vectors = sum(v for v, _ in shapes)
                dim = self.model_size(f"{phase}-pca", f"{phase}: the pyramid PCA's dimension",
                                      s.fv_dim, n * min(per_image, vectors), shapes[0][1])
                self._record("used", f"{phase}-pca", [n * min(per_image, vectors), n])
                self.run.featx("fit-pca", *sample, "--layer", layer, "--view", "pyramid",
                               "--local", "dense", "--dim", dim, "--per-image", per_image,
                               "--overwrite", "-o", pca)
                shutil.rmtree(w / f"sample-{phase}")
            acts = {sp: self.run.featx("extract", *self.base, *self.extraction(phase),
                                       "--split", sp, "--project", pca, "-o",
                                       w / f"acts-{phase}-{sp}") for sp in (s.train, s.test)}
            gmm = w / f"gmm-{phase}.h5"
            if not gmm.is_file():
                n = sum(len(_ids(p)) for p in acts[s.train])
                from featx.io import read_header

                per = sum(list(d.values())[0][0]
                          for d in read_header(acts[s.train][0])["pyramid_shapes"])
                k = min(s.components, max(1, n * per // 2))  # EM needs 2 vectors a component
                if k < s.components:
                    self.deviate(f"{phase}-gmm",
                                 f"{phase}: K = {k} instead of {s.components}: the training "
                                 f"split has only {n * per:,} pyramid vectors")
                per_image = max(1, math.ceil(s.gmm_vectors / max(n, 1)))
                self._record("used", f"{phase}-gmm", [n * min(per_image, per), n])
                self.run.featx("fit-gmm", *acts[s.train], "--pca", pca, "--components",
                               k, "--per-image", per_image, "--overwrite", "-o", gmm)
            self.models[phase] = {"gmm": str(gmm), "pca": str(pca)}
            if phase == "pyr1" and any(str(a).startswith("@guidance") for r in self.rows.values()
                                       for a in r.encode):
                for name, epochs in (("guidance", s.guidance_epochs), ("guidance-random", 0)):
                    path = w / f"{name}-{phase}.h5"
                    if not path.is_file():
                        scales = ",".join(map(str, range(min(s.guidance_scales, s.scales))))
                        self.run.featx("fit-guidance", *acts[s.train], "--channels",
                                       s.guidance_channels, "--epochs", epochs, "--scales",
                                       scales, "--overwrite", "-o", path)
                    self.models[phase][name] = str(path)
            return acts
        acts = {sp: self.run.featx("extract", *self.base, *self.extraction(phase), "--split", sp,
                                   "-o", w / f"acts-{phase}-{sp}") for sp in (s.train, s.test)}
        if phase in ("cl45", "cl34"):
            local = s.pairs[phase[2:]][0]
            m = s.subarray[phase[2:]]
            pca = w / f"pca-{phase}.h5"
            if not pca.is_file():
                from featx.io import read_header

                n = sum(len(_ids(p)) for p in acts[s.train])
                per_image = max(1, math.ceil(s.pca_vectors / max(n, 1)))
                c, h, w_ = read_header(acts[s.train][0])["layer_shapes"][local]
                rows, cols = map(int, s.blocks.split("x"))
                positions = rows * cols * max(h - m + 1, 0) * max(w_ - m + 1, 0)
                dim = self.model_size(f"{phase}-pca", f"{phase}: the cross-layer PCA's "
                                      "dimension", s.cl_dim, n * min(per_image, positions),
                                      c * m * m)
                self._record("used", f"{phase}-pca", [n * min(per_image, positions), n])
                self.run.featx("fit-pca", *acts[s.train], "--layer", local, "--view", "blocks",
                               "--local", f"subarray:{m}x{m}", "--dim", dim, "--per-image",
                               per_image, "--overwrite", "-o", pca)
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
        record.write_text(json.dumps(paths) + "\n")
        return paths

    def _encode(self, r: Row, cache: dict) -> dict[str, list[str]]:
        s = self.s
        if r.join:
            parts = [self.encodings(self.source(self.rows[p]), cache) for p in r.join]
            return {sp: self.run.featx("join", *[_folder(p[sp]) for p in parts], "--dtype",
                                       "float16", "-o", self.enc_dir(r, sp))
                    for sp in (s.train, s.test)}
        if r.phase not in cache:
            cache[r.phase] = self.acts(r.phase)
        models = self.models.get(r.phase, {})
        extra = [x for k in ("pca", "gmm") if k in models
                 for x in (f"--{k}", models[k])]
        if r.phase in ("cl45", "cl34"):
            extra += ["--layers", ",".join(s.pairs[r.phase[2:]])]
        if r.phase == "fc":
            extra += ["--fc-layer", s.fc_layer]
            if s.fc_power is not None:
                extra.append("--power-norm" if s.fc_power else "--no-power-norm")
        args = [models[a[1:]] if str(a).startswith("@") else a for a in r.encode]
        return {sp: self.run.featx("encode", *cache[r.phase][sp], *args, *extra, "--dtype",
                                   "float16", "-o", self.enc_dir(r, sp))
                for sp in (s.train, s.test)}

    def result_path(self, r: Row) -> Path:
        return self.w / "rows" / f"{slug(r.name)}.json"

    def evaluate(self, r: Row, cache: dict) -> dict:
        s = self.s
        t = time.perf_counter()
        enc = self.encodings(r, cache)
        model = self.run.featx("train-svm", *enc[s.train], "--C", s.C, "--memory", s.memory_gb,
                               "--overwrite", "-o", self.w / f"svm-{slug(r.name)}.h5")[0]
        # the MPP row's PR curves (multi-label) or confusion matrix, beside its confidence maps
        plots = ["--plots", self.maps_dir / "plots-mpp"] if r.name == "MPP" and self.maps_dir \
            else []
        out = self.run.featx("evaluate", *enc[s.test], "--model", model, "--memory",
                             s.memory_gb, "--json", self.w / f"metrics-{slug(r.name)}.json",
                             *plots)[0]
        from featx.io import read_header, load_svm

        head = read_header(enc[s.test][0])
        result = {"metrics": json.loads(Path(out).read_text()),
                  "dim": int(head["dim"]), "normalisation": _norm(head.get("normalisation")),
                  "C": float(load_svm(model)[2]["C"]),
                  "seconds": time.perf_counter() - t}
        path = self.result_path(r)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
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
                if phase == "pyr1" and self.maps_dir and (self.w / "svm-mpp.h5").is_file() \
                        and any(self.w.glob("acts-pyr1-*")):
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
        self.run.featx("maps", self.w / f"acts-pyr1-{self.s.test}", "--model",
                       self.w / "svm-mpp.h5", "--gmm", self.models["pyr1"]["gmm"], "--top", 2,
                       "--limit", 4, "--reduce", "sum", "--overwrite", "-o",
                       self.maps_dir / "confidence")  # Yoo §4.5: accumulated

    def go(self) -> dict[str, dict]:
        self.w.mkdir(parents=True, exist_ok=True)
        cache: dict = {}
        results = {}
        order = sorted((r for r in self.rows.values() if not r.alias),
                       key=lambda r: (PHASES.index(r.phase), bool(r.join)))
        for r in order:
            if not self.done(r):
                print(f"== row {r.name}", file=sys.stderr, flush=True)
                self.evaluate(r, cache)
            self.cleanup(cache)
        for r in self.rows.values():
            results[r.name] = json.loads(self.result_path(self.source(r)).read_text())
        return results


def _norm(blocks) -> str:
    """A row's normalisation for the report: √+L2, L2, ... (a join: its parts' with ⊕)."""
    names = {"sqrt+l2": "√+L2", "l2": "L2", "sqrt": "√", "none": "none"}
    parts = list(dict.fromkeys(names.get(b, b) for b in blocks or []))
    return " ⊕ ".join(parts) if parts else "?"


def _ids(path: str) -> list[str]:
    from featx.io import read_header

    return read_header(path)["ids"]


def _folder(paths: list[str]) -> str:
    folders = {str(Path(p).parent) for p in paths}
    assert len(folders) == 1, folders
    return folders.pop()


# --- the plan -------------------------------------------------------------------------------

def plan(rep: Reproduction, calibrate: bool = True) -> list[dict]:
    """Per phase: images, CNN forwards, disk, RAM and (calibrated) time; and the peak."""
    from featx.backbones import get_backbone, layer_shapes
    from featx.datasets import open_dataset
    from featx.images import ViewSpec

    s = rep.s
    opts = {"crop": True} if "--crop-boxes" in s.extra else {}
    n = {sp: len(open_dataset(s.dataset, s.root, sp, **opts).records) for sp in (s.train, s.test)}
    images = n[s.train] + n[s.test]
    bb = get_backbone(s.backbone)
    size = s.input_size or bb.input_size
    shapes = layer_shapes(bb, size)
    phases = sorted({rep.phase_of(r) for r in rep.rows.values()}, key=PHASES.index)
    out = []
    kept = 0.0  # bytes of encodings kept across phases for joins
    for phase in phases:
        args = rep.extraction(phase)
        views = [ViewSpec.parse(v) for v in args[1].split(",")] if args[0] == "--views" else []
        row = {"phase": phase, "images": images}
        cal = _calibrate(rep, phase) if calibrate else None
        if phase.startswith("pyr"):
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
            per_image = sum(v.count() for v in views)
            row["forwards"] = images * per_image
            acts = images * (cal["bytes"] if cal else 0)
            enc = 0.0
            if phase != "fc":
                local, guide = s.pairs[phase[2:]]
                enc = images * s.cl_dim * shapes[guide][0] * 2 * 2  # CL-xxC, float16
                if phase == "cl45":
                    kept += enc
            row["disk"] = acts + 3 * enc + kept
            local_dim = (shapes[s.pairs[phase[2:]][0]][0] * s.subarray[phase[2:]] ** 2
                         if phase != "fc" else 0)
            row["ram"] = max(s.pca_vectors * local_dim * 4 * 2, (cal["rss"] if cal else 0))
        row["ram"] = max(row["ram"], n[s.train] ** 2 * 8 * 3 + s.memory_gb * GB)
        row["seconds"] = images * cal["seconds"] if cal else float("nan")
        if phase.startswith("pyr") and cal:
            row["seconds"] += min(s.pyramid_sample, n[s.train]) * cal["seconds"]
        out.append(row)
    return out


def _calibrate(rep: Reproduction, phase: str) -> dict:
    """Seconds, stored bytes and pyramid vectors per image of ``phase``'s extraction, from
    extracting 1 and then 3 images (the difference cancels model loading); peak RSS."""
    import resource

    from featx.io import read_header

    s = rep.s
    rep.w.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=rep.w) as tmp:
        got = []
        for k in (1, 3):
            t = time.perf_counter()
            paths = rep.run.featx("extract", *rep.base, *rep.extraction(phase), "--split",
                                  s.train, "--sample", k, "-o", Path(tmp) / f"c{k}")
            got.append((time.perf_counter() - t, sum(os.path.getsize(p) for p in paths),
                        read_header(paths[0])))
    (t1, b1, _), (t3, b3, head) = got
    vectors = sum(list(d.values())[0][0] for d in head.get("pyramid_shapes", [])) or 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": max(t3 - t1, 0.0) / 2, "bytes": max(b3 - b1, 0) / 2, "vectors": vectors,
            "rss": rss}


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
             f"{'extract h':>9}"]
    for r in rows:
        lines.append(f"  {r['phase']:<6} {r['images']:>7,} {r['forwards']:>13,} "
                     f"{r['disk'] / GB:>8.2f} {r['ram'] / GB:>7.2f} {r['seconds'] / 3600:>9.2f}")
    peak_disk = max(r["disk"] for r in rows)
    lines.append(f"  peak disk {peak_disk / GB:.2f} GB, peak RAM "
                 f"{max(r['ram'] for r in rows) / GB:.2f} GB, extraction "
                 f"{sum(r['seconds'] for r in rows) / 3600:.2f} h on this machine (calibrated on "
                 "3 images a phase; fits, encodings and SVMs come on top)")
    text = "\n".join(lines)
    print(text, file=sys.stderr)
    return peak_disk, text


# --- the report -----------------------------------------------------------------------------

def ours(result: dict) -> float:
    m = result["metrics"]
    return 100 * (m["mAP"] if "mAP" in m else m["top1"])


def _sp_regions_empty(rep: Reproduction) -> bool:
    """Whether no vector of the MPP pyramid has its receptive field centred in the top or the
    bottom third of the image at any scale (AlexNet's fc7 at 227 and 321 px): MPP + SP's
    top and bottom regions are then empty."""
    from featx.backbones import get_backbone
    from featx.backbones.features import dense_shapes, layer_shapes, receptive_fields
    from featx.encoders.fisher import region_indices
    from featx.images import ViewSpec

    s = rep.s
    bb = get_backbone(s.backbone)
    layer = s.pyramid_layers[0]
    size = (rep.size(pyramid=True) or [None, bb.input_size])[1]
    sizes = ViewSpec("pyramid", scales=s.scales).sizes(size)
    if bb.fc_conv and layer in bb.fc_conv[1]:
        counts = [d[layer][0] for d in dense_shapes(bb, [layer], sizes)]
    else:
        counts = [math.prod(layer_shapes(bb, z)[layer][1:]) for z in sizes]
    geometry = receptive_fields(bb, layer, sizes)
    return all(len(i) == 0 for top, bottom in ((0.0, 1 / 3), (2 / 3, 1.0))
               for i in region_indices(sizes, counts, top, bottom, geometry))


def _samples(rep: Reproduction) -> str:
    """How many features each model was fitted on, as this run recorded them."""
    used = rep.used
    names = {"cl45": "the CL-45 PCA on {:,} local features of {:,} images",
             "cl34": "the CL-34 PCA on {:,} local features of {:,} images",
             "pyr1": "the pyramid PCA on {:,} vectors of {:,} sampled images",
             "pyr2": "the pool5 pyramid's PCA on {:,} vectors of {:,} sampled images"}
    parts = [names[key.split("-")[0]].format(*used[key]) for key in sorted(used)
             if key.endswith("-pca")]
    parts += [f"the {key.split('-')[0]} GMM on {used[key][0]:,} projected vectors of "
              f"{used[key][1]:,} images" for key in sorted(used) if key.endswith("-gmm")]
    s = rep.s
    return "; ".join(parts) or (f"asked: {s.pca_vectors:,} local features a PCA, "
                                f"{s.gmm_vectors:,} pyramid vectors a GMM")


def write_report(rep: Reproduction, results: dict[str, dict], reports: Path,
                 plan_text: str) -> Path:
    from featx import paper
    from featx.datasets import VOC_CLASSES

    s = rep.s
    reports.mkdir(parents=True, exist_ok=True)
    multi = "mAP" in next(iter(results.values()))["metrics"]
    metric = "mAP (VOC07 11-point AP)" if multi else "top-1 accuracy"
    lines = [f"# {s.name}", ""]
    if s.note:
        lines += [f"> {s.note}", ""]
    lines += [f"Backbone `{s.backbone}` ({s.weights} weights, input "
              f"{s.input_size or 'the backbone default'}); cross-layer pairs "
              + ", ".join(f"{k}: {a}->{b}" for k, (a, b) in s.pairs.items())
              + f", {s.cl_dim}-d PCA, blocks {s.blocks.replace('x', '×')} (rows × columns) for the "
              f"F and C rows; pyramids of {', '.join(s.pyramid_layers)} over {s.scales} "
              f"scales, {s.fv_dim}-d PCA, K={s.components} GMM; linear SVMs with C chosen by "
              f"5-fold cross-validation (`--C {s.C}`). Train split `{s.train}`, test split "
              f"`{s.test}`. Ours: {metric}, in %.", ""]
    shown = set()
    for tid, (title, trows) in paper.TABLES.items():
        body = []
        for row, cells in trows.items():
            if row not in results:
                continue
            shown.add(row)
            pub = cells.get(s.dataset)
            o = ours(results[row])
            p = f"{pub[0]:.2f}" if pub else "—"
            d = f"{o - pub[0]:+.2f}" if pub else "—"
            body.append(f"| {row} | {o:.2f} | {p} | {d} | {pub[1] if pub else 'not published'} "
                        f"| {results[row]['dim']:,} | {results[row]['C']:g} "
                        f"| {results[row].get('normalisation', '?')} |")
        if body:
            lines += [f"## {title}", "",
                      "| row | ours | paper | delta | reference | dims | C | normalisation |",
                      "|---|---:|---:|---:|---|---:|---:|---|", *body]
            if tid in paper.NOTES and paper.NOTES[tid][0] == s.dataset:
                lines += ["", paper.NOTES[tid][1]]
            lines.append("")
    other = [r for r in results if r not in shown]
    if other:
        lines += ["## Other rows (no published number)", "",
                  "| row | ours | dims | C | normalisation |", "|---|---:|---:|---:|---|"]
        lines += [f"| {r} | {ours(results[r]):.2f} | {results[r]['dim']:,} | "
                  f"{results[r]['C']:g} | {results[r].get('normalisation', '?')} |"
                  for r in other]
        lines.append("")
    if s.dataset == "voc07":
        lines += ["## Yoo et al. Table 5: VOC07 per-class AP", "",
                  "| row | " + " | ".join(VOC_CLASSES) + " | mAP |",
                  "|---|" + "---:|" * (len(VOC_CLASSES) + 1)]
        for row, pub in paper.YOO_T5.items():
            if row in results:
                ap = results[row]["metrics"]["AP"]
                lines.append(f"| {row} (ours) | " + " | ".join(f"{100 * a:.1f}" for a in ap)
                             + f" | {ours(results[row]):.1f} |")
            lines.append(f"| {row} (paper) | " + " | ".join(f"{v:.1f}" for v in pub) + " |")
        lines.append("")
    lines += ["## Not run", "", "| row | why |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in paper.NOT_RUN.items()]
    if "34" not in s.pairs:
        lines.append("| CL-34, CL-34F, CL-34C | this backbone has no conv3/conv4 pair |")
    lines += ["", "## Settings and known deviations", "",
              "- torchvision's AlexNet is the 'one weird trick' variant: conv4 has 256 channels "
              "where Caffe's (the papers') has 384, and there is no LRN; `alexnet_caffe` with "
              "converted weights is the faithful setting. Exact agreement is not expected.",
              "- Yoo's pyramid: 7 scales of 227·√2^i with fc7 computed densely (4,410 vectors "
              "an image for Caffe's network, Table 1); torchvision's padding gives slightly "
              "different counts. MPP + SP places each vector by its receptive-field centre, "
              "from the network's own arithmetic of strides, kernels and paddings "
              "(featx.backbones.features.receptive_field). With an --input-size below the backbone's, "
              "the pyramids still start at the backbone's size (dense fc layers need a full "
              "pool5 window).",
              "- PCA and GMM are fitted on stratified, seeded samples of the whole training "
              f"split ({_samples(rep)}; Yoo fit both on 256,000).",
              "- Neither paper gives C: it is chosen per row by 5-fold cross-validation on the "
              "training split (column C). 'Sign-quantised' is Liu's sign(P) in {-1, 0, 1} "
              "as it is; 'Sign-quantised (unit norm)' the same codes read at unit L2 norm "
              "(/√nonzeros, featx's `--quantize sign`), so that C means what it means for the "
              "other rows.",
              "- Normalisation (column normalisation): each row's paper's. The fc baselines "
              "(CNN-Global, CNN-Jitter/AP10, Alex-FC7, AP50) are L2-normalised means of the fc "
              "vectors (Yoo et al. Table 2; the power transform is their Table 3b's separate "
              "trick); cross-layer and direct poolings take the signed square root, then L2 "
              "(Liu et al.); the Fisher rows are improved Fisher vectors (√ + L2). A join "
              "(⊕) concatenates its parts, each as normalised, at equal weight."
              + (" This run forced the fc baselines to "
                 + ("√+L2." if s.fc_power else "L2 alone.") if s.fc_power is not None else ""),
              "- 'CL + CNN-Global' / 'CL + CNN-Jitter' join the CL-45C encoding and the fc "
              "encoding with equal weight (featx join). 'MPP (FC7, Pool5)' joins the MPP of the "
              "fc7 pyramid and the MPP of a pool5 pyramid with its own PCA and GMM.",
              "- Ours for single-label data is top-1 accuracy; the papers report accuracy.",
              "- Scheme 2 (Liu et al. 2016; only its abstract is at hand, so no published "
              "number): the guidance is a 1x1 convolution of K = "
              f"{s.guidance_channels} channels over the fc pyramid's PCA-reduced region "
              f"vectors of the smallest {min(s.guidance_scales, s.scales)} scales, trained "
              f"for at most {s.guidance_epochs} epochs with early stopping (docs/scheme2.md); "
              "'random guidance' is the same layer untrained (fit-guidance --epochs 0), the "
              "control that says what training buys.",
              *[f"- This run: {d}." for d in rep.deviations],
              *(["- This run: MPP + SP's top and bottom thirds are empty: at these pyramid "
                 f"sizes no {s.pyramid_layers[0]} vector has its receptive field centred there "
                 "(featx.backbones.features.receptive_field), so the row adds nothing to MPP "
                 "but its middle region, which is MPP's vectors again."]
                if "MPP + SP" in results and _sp_regions_empty(rep) else []),
              "", "## Plan and time", "", "```", plan_text, "```", "",
              "Wall time per featx stage (all rows, this run):", "",
              "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rep.run.times.items()]
    lines.append(f"| total | {sum(rep.run.times.values()):.1f} |")
    path = reports / f"{s.name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> None:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FEATX_DATA", repo / "data")))
    ap.add_argument("--work", type=Path, default=repo / "work" / "reproduce")
    ap.add_argument("--reports", type=Path, default=repo / "reports")
    ap.add_argument("--backbone")
    ap.add_argument("--weights")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--scales", type=int)
    ap.add_argument("--only", help="Comma-separated rows (and what they need), e.g. CL-45C,MPP")
    ap.add_argument("--plan", action="store_true", help="Print the plan and stop.")
    ap.add_argument("--quiet", action="store_true", help="No progress bars.")
    args = ap.parse_args(argv)
    setups = benchmarks(args.data)
    if not setups:
        print(f"No benchmark dataset under {args.data} (see `make data`): running the small "
              "OFFLINE chain on the shipped flower photos instead.", file=sys.stderr)
        setups = [offline_setup(repo)]
    for setup in setups:
        changes = {k: v for k, v in (("weights", args.weights), ("input_size", args.input_size),
                                     ("scales", args.scales)) if v is not None}
        if args.backbone and args.backbone != setup.backbone:
            changes.update(_backbone_defaults(args.backbone))
        setup = replace(setup, **changes)
        only = {x.strip() for x in args.only.split(",")} if args.only else None
        rep = Reproduction(setup, args.work, only, args.quiet,
                           maps_dir=args.reports / f"{setup.name}-maps")
        from featx.errors import FeatxError

        try:  # an incomplete benchmark folder is named here, before any work
            rows = plan(rep)
        except FeatxError as exc:
            sys.exit(f"Error: {setup.name}: {exc}")
        peak, text = print_plan(rep, rows)
        if args.plan:
            continue
        rep.w.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(rep.w).free
        have = sum(f.stat().st_size for f in rep.w.rglob("*") if f.is_file())
        if free + have < peak:
            sys.exit(f"Error: {setup.name} needs about {peak / GB:.1f} GB of disk in {rep.w} at "
                     f"its peak; {free / GB:.1f} GB are free. Free space or pass --work DIR on a "
                     "larger disk.")
        results = rep.go()
        print(write_report(rep, results, args.reports, text))


def _backbone_defaults(name: str) -> dict:
    """Settings of another backbone: its cross-layer pair (no conv3/conv4 pair unless it is an
    AlexNet) and fc layer."""
    from featx.backbones import get_backbone

    bb = get_backbone(name)
    if name.startswith("alexnet"):
        return {"backbone": name}
    if name == "efficientnet_lite0":
        return {"backbone": name, "pairs": dict(OFFLINE_PAIRS), "subarray": {"45": 3, "34": 5},
                "fc_layer": "pool", "pyramid_layers": ("head", "stage7")}
    if bb.cross_layer is None:
        sys.exit(f"Error: {name} has no cross-layer pair; pick a CNN backbone")
    guide = bb.cross_layer[1]
    return {"backbone": name, "pairs": {"45": bb.cross_layer},
            "subarray": {"45": bb.kernels.get(guide, 1)},
            "fc_layer": "fc7" if "fc7" in bb.layers else "pool",
            "pyramid_layers": tuple((bb.fc_conv and list(bb.fc_conv[1])[-1:]) or ["pool"]) * 2}


if __name__ == "__main__":
    main()
