"""Throughput of `featx extract` against the bare model forward, measured in one run.

    python benchmarks/extract.py [--images 768] [--backbone alexnet] [--layers conv4,conv5]

Writes VOC-sized JPEGs (500x375, quality 90) made from scikit-image's sample photos to a
temporary folder, then measures
  * bare: the torchvision model's own forward up to the last requested layer (the same
    modules featx runs), on an already-decoded, already-normalised batch, in a plain Python
    process (glibc's default allocator): the peer, in the default NCHW memory format and in
    channels_last (which featx uses); and channels_last again in this process after
    `keep_host_memory` (featx's allocator setting), to show what of featx's speed is the
    allocator's;
  * featx: the whole stage, extract.run (decode in workers, forward, float16 HDF5 writes),
    model loading included, in a fresh process set up as the command line sets it up;
  * ceiling: the channels_last forward (featx's allocator) and, at the same time, the decoding
    of the same images in one low-priority process a core (as featx's workers), with nothing
    else (no model loading, no batches between processes, no writes): the best the whole stage
    could do on this machine;
and prints images/s of each and the ratios featx / bare. The limit: the work the bare forward
does not do, timed per image on one thread (decode + resize in the workers; normalise, float16
store and HDF5 write in the main process), against the forward's own CPU time per image (its
wall time x the threads it keeps busy); the ratio featx can reach with every core busy and no
contention is forward / (forward + that work).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from featx.backbones import get_backbone, load_model
from featx.device import keep_host_memory
from featx.images import ViewSpec, decode, normalize_pixels
from featx.stages import extract
from featx.stages.extract import ExtractConfig, nonfinite_rows
from featx.images import folder_source


def make_photos(folder: Path, n: int, seed: int = 0) -> None:
    from skimage import data

    photos = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket(), data.cat(),
              data.stereo_motorcycle()[0]]
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)])
        w, h = img.size
        x0, y0 = rng.integers(0, w // 5), rng.integers(0, h // 5)
        img = img.crop((x0, y0, x0 + 4 * w // 5, y0 + 4 * h // 5)).resize((500, 375))
        img.save(folder / f"{i:05d}.jpg", quality=90)


def truncated(backbone: str, layers: list[str], batch: int, channels_last: bool):
    """The torchvision model up to the last of ``layers`` and one pre-normalised batch."""
    bb = get_backbone(backbone)
    model, _ = load_model(bb, "none")
    last = bb.layers[bb.check_layers(layers)[-1]]
    # the forward up to and including the module of the last layer: for Sequential features
    # this is the plain slice the user would write by hand
    head, idx = last.split(".")[0], int(last.split(".")[1]) if "." in last else None
    net = getattr(model, head)[: idx + 1] if idx is not None else model
    x = torch.randn(batch, 3, bb.input_size, bb.input_size)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return net, x


def bare_forward(backbone: str, layers: list[str], n: int, batch: int, channels_last: bool,
                 repeats: int = 2) -> float:
    """Images/s of the truncated torchvision forward on one pre-normalised batch."""
    # like for like: the same float32 network, batch size, threads and layers as featx's
    # forward; only the decoding, the copies and the writes, featx's own work, are left out
    net, x = truncated(backbone, layers, batch, channels_last)
    best = 0.0
    with torch.inference_mode():
        net(x)
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(n // batch):
                net(x)
            best = max(best, (n // batch) * batch / (time.perf_counter() - t))
    return best


def _decode_share(paths: list[Path], size: int, go, took) -> None:
    """One decoding process of :func:`overlap_ceiling`: its images decoded and resized as
    featx's workers do them (lowest priority, one thread), from the moment the forward starts."""
    os.nice(19)
    torch.set_num_threads(1)
    view = ViewSpec.parse("whole")
    go.wait()
    t = time.perf_counter()
    for p in paths:
        view.render(decode(str(p), (size, size)), size, 0, "bilinear")
    took.value = time.perf_counter() - t


def overlap_ceiling(photos: Path, backbone: str, layers: list[str], n: int, batch: int) -> float:
    """Images/s of the two jobs extraction cannot skip, run at once with nothing else: the
    channels_last forward (featx's allocator) of n images, and their decoding in one process a
    core beside it (as featx's workers). No model loading, no batches crossing processes, no
    normalising, no writes: what featx's whole stage could reach on this machine at best."""
    keep_host_memory()
    size = get_backbone(backbone).input_size
    net, x = truncated(backbone, layers, batch, True)
    paths = sorted(photos.glob("*.jpg"))[:n]
    fork = multiprocessing.get_context("fork")
    go, cores = fork.Event(), os.cpu_count() or 1
    took = [fork.Value("d", 0.0) for _ in range(cores)]
    decoders = [fork.Process(target=_decode_share, args=(paths[i::cores], size, go, took[i]))
                for i in range(cores)]
    with torch.inference_mode():
        net(x)  # oneDNN's kernels made, as before any timed forward
        for d in decoders:
            d.start()
        time.sleep(1.0)  # the decoders are up and waiting
        t = time.perf_counter()
        go.set()
        for _ in range(n // batch):
            net(x)
        for d in decoders:
            d.join()
    return (n // batch) * batch / (time.perf_counter() - t)


def per_image_costs(photos: Path, size: int, n: int = 64) -> dict[str, float]:
    """Seconds per image, on one thread, of what `featx extract` does beyond the forward."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    paths = sorted(photos.glob("*.jpg"))[:n]
    view = ViewSpec.parse("whole")
    costs = {}

    def best(fn, repeat=3):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times) / len(paths), out

    costs["decode + resize (workers)"], imgs = best(
        lambda: [view.render(decode(str(p), (size, size)), size, 0, "bilinear") for p in paths])
    batch = torch.cat(imgs)
    costs["normalise"], _ = best(lambda: normalize_pixels(batch, (0.485, 0.456, 0.406),
                                                   (0.229, 0.224, 0.225), False))
    acts = [torch.randn(len(paths), c, 13, 13).contiguous(memory_format=torch.channels_last)
            for c in (384, 256)]  # as the hooks see them; stored NCHW float16
    costs["float16 + finiteness check"], _ = best(
        lambda: [nonfinite_rows(t.to(torch.float16, memory_format=torch.contiguous_format))
                 for t in acts])
    torch.set_num_threads(threads)
    return costs


def featx_rate(photos: Path, out: Path, cfg: ExtractConfig, n: int) -> float:
    """Images/s of the whole stage in this (fresh) process, set up as the command line is."""
    multiprocessing.set_start_method("fork", force=True)  # a spawned process defaults to spawn
    keep_host_memory()
    t = time.perf_counter()
    list(extract.run(folder_source(photos), out, cfg))
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=768)
    ap.add_argument("--backbone", default="alexnet")
    ap.add_argument("--layers", default="conv4,conv5")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    layers = args.layers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        make_photos(photos, args.images)
        # a weights file, as in real use (ImageNet weights are not reachable offline)
        weights = Path(tmp) / "weights.pt"
        torch.save(load_model(get_backbone(args.backbone), "none")[0].state_dict(), weights)
        cfg = ExtractConfig(backbone=args.backbone, layers=layers, weights=str(weights),
                            batch_size=args.batch_size, workers=args.workers)
        # each measurement in a fresh process: the peer in a plain one (glibc's defaults),
        # featx as its command line runs; rounds alternate them, the best of each is kept
        rates: dict[str, list[float]] = {"nchw": [], "cl": [], "featx": [], "ceiling": []}
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                 max_tasks_per_child=1) as fresh:
            for r in range(args.repeats):
                for cl in (False, True):
                    rates["cl" if cl else "nchw"].append(fresh.submit(
                        bare_forward, args.backbone, layers, args.images, args.batch_size,
                        cl).result())
                rates["featx"].append(fresh.submit(
                    featx_rate, photos, Path(tmp) / f"acts{r}", cfg, args.images).result())
                rates["ceiling"].append(fresh.submit(
                    overlap_ceiling, photos, args.backbone, layers, args.images,
                    args.batch_size).result())
        bare, bare_cl, ours, ceiling = (max(rates[k]) for k in ("nchw", "cl", "featx", "ceiling"))
        keep_host_memory()  # as the command line does
        costs = per_image_costs(photos, get_backbone(args.backbone).input_size)
        bare_kept = bare_forward(args.backbone, layers, args.images, args.batch_size, True)
    print(f"{args.backbone} {args.layers}, {args.images} JPEGs 500x375, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads")
    rows = [("bare forward, NCHW (decoded, normalised batch)", bare),
            ("bare forward, channels_last (ditto): the peer", bare_cl),
            ("bare forward, channels_last, featx's allocator", bare_kept),
            ("that forward with the decoding beside it (ceiling)", ceiling),
            ("featx extract (decode + forward + write)", ours)]
    print("featx rounds: " + ", ".join(f"{x:.1f}" for x in rates["featx"]) + " images/s; "
          "peer rounds: " + ", ".join(f"{x:.1f}" for x in rates["cl"]) + "; ceiling rounds: "
          + ", ".join(f"{x:.1f}" for x in rates["ceiling"]))
    print(f"{'what':<50}{'images/s':>10}{'featx / this':>14}")
    for name, rate in rows:
        print(f"{name:<50}{rate:>10.1f}{ours / rate:>14.2f}")
    forward = torch.get_num_threads() / bare_kept  # CPU seconds of forward per image
    extra = sum(costs.values())
    print(f"\nCPU ms per image: channels_last forward {1000 * forward:.2f} "
          f"({torch.get_num_threads()} threads x {1000 / bare_kept:.2f} ms, featx's allocator); "
          + ", ".join(f"{k} {1000 * v:.2f}" for k, v in costs.items()))
    print(f"ceiling with every core busy, no contention: forward / (forward + the rest) = "
          f"{forward / (forward + extra):.2f}; the HDF5 write comes on top")
    print(f"measured ceiling: the forward and the decoding at once, nothing else = "
          f"{ceiling / bare_cl:.2f} of the peer; featx reaches {ours / ceiling:.2f} of it")
    print()
    print(f"figure: extract_vs_channels_last = {ours / bare_cl:.2f} (goal 0.85)")

if __name__ == "__main__":
    main()
