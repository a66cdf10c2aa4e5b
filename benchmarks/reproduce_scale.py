"""Scale simulation of `make reproduce`: the whole chain on a synthetic VOC07-layout data set of
N images (random weights), measuring peak disk and peak RSS per stage, extrapolated to each
benchmark's size.

    python benchmarks/reproduce_scale.py --images 60 [--keep DIR]

The data set: N JPEGs at VOC sizes (500x375 and 375x500), half trainval and half test, the
ImageSets/Main/<class>_<split>.txt files, multi-label with difficult (0) flags. The chain:
featx reproduce with AlexNet at the papers' settings (227 input, 7 scales, 500-d and
128-d PCA, K = 256) and ``--weights none``, in a subprocess sampled every 0.2 s for the RSS (Pss)
of its process tree and the size of every folder of its work folder.

Extrapolation, per quantity:
- disk: every work subfolder scales with its images: activations and encodings with the
  split sizes (linear in N), the pyramid PCA sample with min(256, train images), calibration
  folders and model files not at all; the projected peak is the largest projected total over
  the run's samples;
- RAM: each stage's measured peak plus what grows with N in it: the train-svm Gram matrix and
  its copies (3 x 8 n^2 bytes), the PCA and GMM samples (capped in count by the reproduce
  settings; the simulation's are smaller, the difference is added at 2 copies of 4 bytes a
  value), and fit-guidance's region vectors (every training image's fc7 pyramid vectors of
  the guidance's scales, 128-d float16);
- CPU hours: measured stage seconds x 2 cores, extraction / encoding / evaluation linear in
  the images, the pyramid sample in the sample's images; train-svm from a calibration on this
  machine at the benchmark's training size: one SVC fit on a clustered synthetic Gram matrix,
  times (5 C values x 5 folds + 1) fits per class, plus the Gram matrix at the measured GEMM
  rate.

Prints one line per benchmark: ``VOC07 projected: peak disk 12.3 GB, peak RAM 3.1 GB, CPU hours
9.8``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from featx.datasets import VOC_CLASSES  # noqa: E402

# (name, images, train images, classes)
BENCHMARKS = [("VOC07", 9963, 5011, 20), ("MIT-67", 6700, 5360, 67),
              ("CUB", 11788, 5994, 200), ("Flowers", 8189, 2040, 102)]
from featx.reproduce import Setup  # noqa: E402

_PAPERS = Setup("voc07", "voc07", Path("."), "trainval", "test")  # the papers' settings
PCA_VECTORS, GMM_VECTORS, PYRAMID_SAMPLE = (_PAPERS.pca_vectors, _PAPERS.gmm_vectors,
                                            _PAPERS.pyramid_sample)
FV_DIM, GUIDANCE_SCALES = _PAPERS.fv_dim, _PAPERS.guidance_scales
CORES = os.cpu_count() or 1
GB = 1e9


def make_voc(root: Path, n: int, seed: int = 0) -> None:
    """N smooth random JPEGs at VOC sizes, half trainval / half test, each with one or two
    positive classes (every class positive in trainval when N allows), some difficult."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(1, n + 1)]
    labels = -np.ones((n, len(VOC_CLASSES)), int)
    for i in range(n):
        labels[i, (i // 2) % len(VOC_CLASSES)] = 1  # pairs: one in each split
        if rng.random() < 0.4:
            labels[i, rng.integers(len(VOC_CLASSES))] = 1
        if rng.random() < 0.2:
            labels[i, rng.integers(len(VOC_CLASSES))] = 0
    for i, name in enumerate(ids):
        w, h = (500, 375) if i % 3 else (375, 500)
        small = rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(voc / "JPEGImages" / f"{name}.jpg",
                                                                  quality=90)
    # interleave, so both splits see every class
    splits = {"trainval": list(range(0, n, 2)), "test": list(range(1, n, 2))}
    for split, rows in splits.items():
        for c, cname in enumerate(VOC_CLASSES):
            (voc / "ImageSets" / "Main" / f"{cname}_{split}.txt").write_text(
                "".join(f"{ids[i]} {labels[i, c]:2d}\n" for i in rows))


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (DataLoader workers): the sum of their
    proportional set sizes (Pss), so pages the forked workers share with their parent count
    once, not once a process (VmRSS where smaps_rollup is unreadable)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            try:
                with open(f"/proc/{p}/smaps_rollup") as fh:
                    key = "Pss:"
                    lines = fh.readlines()
            except OSError:
                with open(f"/proc/{p}/status") as fh:
                    key = "VmRSS:"
                    lines = fh.readlines()
            total += next((int(ln.split()[1]) * 1024 for ln in lines if ln.startswith(key)), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def folder_sizes(work: Path) -> dict[str, int]:
    """Bytes under each top-level entry of every setup folder in ``work``."""
    out: dict[str, int] = {}
    for setup in work.iterdir() if work.is_dir() else []:
        for entry in setup.iterdir() if setup.is_dir() else []:
            size = 0
            try:
                if entry.is_file():
                    size = entry.stat().st_size
                else:
                    for dirpath, _, files in os.walk(entry):
                        for f in files:
                            try:
                                size += os.path.getsize(os.path.join(dirpath, f))
                            except OSError:
                                pass
            except OSError:
                continue
            out[entry.name] = size
    return out


def run_chain(data: Path, work: Path, reports: Path) -> tuple[list, list, float]:
    """Run featx reproduce; (samples, stage starts, seconds). A sample is (time, rss,
    {folder: bytes}); a stage start is (time, stage, output name), from the trace file the
    reproduction's runner writes (one JSON line a stage)."""
    trace = work.parent / "trace.jsonl"
    trace.unlink(missing_ok=True)
    env = {**os.environ, "FEATX_REPRODUCE_TRACE": str(trace), "FEATX_DATA": str(data)}
    cmd = [sys.executable, "-m", "featx", "-q", "reproduce", "--data", str(data), "--work",
           str(work), "--reports", str(reports), "--weights", "none"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    samples, stages, lines = [], [], []

    def read():
        lines.extend(proc.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        samples.append((time.time(), tree_rss(proc.pid), folder_sizes(work)))
        time.sleep(0.2)
    reader.join()
    if proc.returncode:
        sys.exit("reproduce failed:\n" + "".join(lines[-30:]))
    for line in trace.read_text().splitlines() if trace.is_file() else []:
        entry = json.loads(line)
        stages.append((entry["time"], entry["stage"], entry["target"]))
    return samples, stages, time.time() - t0


def stage_at(stages: list, t: float) -> tuple[str, str]:
    current = ("startup", "")
    for start, stage, target in stages:
        if start > t:
            break
        current = (stage, target)
    return current


def disk_factor(name: str, n_sim: int, train_sim: int, n_b: int, train_b: int) -> float:
    if name.startswith("sample-"):
        return min(PYRAMID_SAMPLE, train_b) / min(PYRAMID_SAMPLE, train_sim)
    if name.startswith(("acts-", "enc-")):
        return n_b / n_sim
    return 1.0  # models, metrics, calibration


def svc_seconds(n: int, seed: int = 0) -> float:
    """One binary SVC fit (libsvm, precomputed kernel) at n training images, on clustered
    synthetic unit-norm encodings: the unit of train-svm's cost; best of 2."""
    from featx.svm import _fit

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 512))
    lab = rng.integers(0, 20, n)
    x = centres[lab] + rng.normal(size=(n, 512)) * 2
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = x @ x.T
    y = np.where(lab == 0, 1, -1)
    best = math.inf
    for _ in range(2):
        t = time.perf_counter()
        _fit(k, np.arange(n), y, 1.0)
        best = min(best, time.perf_counter() - t)
    return best


def gemm_rate() -> float:
    """float32 GEMM FLOP/s of this machine (best of 3, 2048 x 4096 x 2048)."""
    import torch

    a, b = torch.randn(2048, 4096), torch.randn(4096, 2048)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 * 4096 * 2048 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--keep", type=Path, help="Keep the data, work and reports here.")
    args = ap.parse_args()
    if args.images < 2 * len(VOC_CLASSES):
        sys.exit(f"--images must be at least {2 * len(VOC_CLASSES)} (every class in both splits)")
    tmp = tempfile.TemporaryDirectory()
    base = args.keep or Path(tmp.name)
    data, work, reports = base / "data", base / "work", base / "reports"
    make_voc(data, args.images)
    samples, stages, seconds = run_chain(data, work, reports)
    n_sim, train_sim = args.images, (args.images + 1) // 2

    # measured per stage
    per_stage: dict[str, dict] = {}
    for t, rss, _ in samples:
        stage, target = stage_at(stages, t)
        key = f"{stage} {target}".strip()
        d = per_stage.setdefault(key, {"rss": 0})
        d["rss"] = max(d["rss"], rss)
    times: dict[tuple, float] = {}
    ends = [s[0] for s in stages[1:]] + [stages[0][0] + seconds if stages else 0]
    for (start, stage, target), end in zip(stages, ends):
        times[(stage, target)] = times.get((stage, target), 0.0) + max(end - start, 0.0)
    peak_disk_sim = max(sum(f.values()) for _, _, f in samples)
    print(f"simulated {n_sim} images ({train_sim} trainval): {seconds:.0f} s, peak disk "
          f"{peak_disk_sim / GB:.3f} GB, peak RSS {max(r for _, r, _ in samples) / GB:.2f} GB")
    for key, d in sorted(per_stage.items(), key=lambda kv: -kv[1]["rss"])[:8]:
        print(f"  peak RSS {d['rss'] / GB:6.2f} GB  {key}")

    rows = [json.loads(p.read_text()) for p in work.glob("*/rows/*.json")]
    dims = [r["dim"] for r in rows]
    rate = gemm_rate()
    vec = _pyramid_vectors()
    for name, n_b, train_b, classes in BENCHMARKS:
        disk = max(sum(size * disk_factor(f, n_sim, train_sim, n_b, train_b)
                       for f, size in folders.items()) for _, _, folders in samples)
        ram = 0.0
        for key, d in per_stage.items():
            extra = 0.0
            if key.startswith("train-svm"):
                extra = 3 * 8 * (train_b ** 2 - train_sim ** 2)
            elif key.startswith("fit-pca pca-cl"):
                dim = 256 * 9 if "cl45" in key else 384 * 9
                extra = 2 * 4 * dim * (min(PCA_VECTORS, train_b * 605)
                                       - min(PCA_VECTORS, train_sim * 605))
            elif key.startswith("fit-pca pca-pyr"):
                dim = 4096 if "pyr1" in key else 256
                v = vec["fc7" if "pyr1" in key else "pool5"]
                extra = 2 * 4 * dim * (min(PCA_VECTORS, min(PYRAMID_SAMPLE, train_b) * v)
                                       - min(PCA_VECTORS, min(PYRAMID_SAMPLE, train_sim) * v))
            elif key.startswith("fit-guidance"):
                extra = 2 * FV_DIM * vec["guidance"] * (train_b - train_sim)
            elif key.startswith("fit-gmm"):
                v = vec["fc7" if "pyr1" in key else "pool5"]
                extra = 4 * (3 * 128 + 256) * (min(GMM_VECTORS, train_b * v)
                                               - min(GMM_VECTORS, train_sim * v))
            ram = max(ram, d["rss"] + max(extra, 0.0))
        cpu = 0.0
        for (stage, target), sec in times.items():
            if stage == "train-svm":
                continue
            if target.startswith("sample-"):
                f = min(PYRAMID_SAMPLE, train_b) / min(PYRAMID_SAMPLE, train_sim)
            elif target.startswith("tmp") or target in ("c1", "c3"):
                f = 1.0
            elif stage in ("fit-pca", "fit-gmm"):
                f = 1.0 if stage == "fit-pca" else min(GMM_VECTORS, train_b * vec["fc7"]) / \
                    min(GMM_VECTORS, train_sim * vec["fc7"])
            else:
                f = n_b / n_sim
            cpu += sec * f * CORES
        t_fit = svc_seconds(train_b)
        fits = classes * (5 * 5 + 1)  # --C auto: 5 values x 5 folds, then the final fit
        cpu += len(rows) * fits * t_fit + sum(2 * train_b ** 2 * d / rate for d in dims)
        print(f"{name} projected: peak disk {disk / GB:.1f} GB, peak RAM {ram / GB:.1f} GB, "
              f"CPU hours {cpu / 3600:.1f}")


def _pyramid_vectors() -> dict[str, int]:
    """Dense vectors an image of AlexNet's fc7 and pool5 pyramids (7 scales from 227), and of
    the fc7 pyramid's scales scheme 2's guidance trains on."""
    from featx.backbones import dense_shapes, get_backbone, layer_shapes
    from featx.images import ViewSpec

    bb = get_backbone("alexnet")
    sizes = ViewSpec("pyramid", scales=7).sizes(227)
    fc7 = [d["fc7"][0] for d in dense_shapes(bb, ["fc7"], sizes)]
    pool5 = sum(math.prod(layer_shapes(bb, s)["pool5"][1:]) for s in sizes)
    return {"fc7": sum(fc7), "pool5": pool5, "guidance": sum(fc7[:GUIDANCE_SCALES])}


if __name__ == "__main__":
    main()
