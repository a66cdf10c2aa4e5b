"""ImageNet top-1 of featx's extraction against the same weights through their own transforms.

    python benchmarks/backbone_accuracy.py [--photos DIR] [--backbones a,b,...] [--ablate]

Checks what no equation can: that a backbone's preprocessing (mean, std, interpolation, resize
and crop) and weights are right. On labelled ImageNet photos (default
``../shared/data/imagenet-labelled``: ``labels.csv`` with ``file,imagenet_index``; ImageNet's
terms: for checks, never shipped), for every backbone whose ImageNet weights load offline:

- featx: ``featx extract --views centre --layers logits`` (the stage in this process: decode,
  resize to the weights' resize size, centre crop, normalise, BatchNorm-folded network), top-1
  of the stored logits;
- peer: the same weights in the model library's own network (timm's, or torchvision's, not
  folded) fed by that library's own evaluation transform on PIL images
  (``timm.data.create_transform`` of the model's ``pretrained_cfg``; torchvision's
  ``weights.transforms()``), top-1.

Same photos, same threads, float32 both. Like for like, featx crops the weights' own input size
(AlexNet's papers' 227 is featx's default; the check uses torchvision's 224). Goal: equal
within one photo. ``--ablate`` adds featx with ImageNet's mean/std and bilinear resizing (the
preprocessing featx used for Lite0 before issue 23) to show what a wrong one costs.
Backbones without offline weights are listed as skipped.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from featx.backbones import BACKBONES, get_backbone, load_model
from featx.backbones.registry import IMAGENET_MEAN, IMAGENET_STD
from featx.errors import WeightsError
from featx.images import ImageRecord, ImageSource
from featx.io import ActivationShard
from featx.stages.extract import ExtractConfig, run as extract
from real_photos import shown  # benchmarks/, beside this script

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-labelled"
CURATED = ("alexnet", "vgg16", "resnet50", "efficientnet_lite0")


def read_photos(root: Path) -> tuple[list[Path], np.ndarray]:
    with open(root / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    return [root / r["file"] for r in rows], np.array([int(r["imagenet_index"]) for r in rows])


def featx_top1(name: str, paths: list[Path], size: int) -> np.ndarray:
    """featx's predicted class of each photo: the argmax of its extracted centre-view logits."""
    source = ImageSource([ImageRecord(p.name, str(p)) for p in paths], description="photos")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExtractConfig(backbone=name, layers=["logits"], views=["centre"], dtype="float32",
                            input_size=size, workers=0)
        logits = []
        for shard in extract(source, Path(tmp) / "acts", cfg):
            with ActivationShard(shard) as s:
                logits.append(s.read("centre", "logits")[:, 0])
    return np.concatenate(logits).argmax(1)


def peer(name: str):
    """(model, transform of a PIL image, input size): the weights in their library's own network
    with that library's own evaluation transform."""
    bb = get_backbone(name)
    family, _, model_name = name.partition(":")
    if name == "efficientnet_lite0" or family == "timm":
        import timm

        from featx.backbones.efficientnet_lite import TIMM_NAME

        net = timm.create_model(TIMM_NAME if name == "efficientnet_lite0" else model_name)
        net.load_state_dict(bb.imagenet())  # the weights featx loads, unfolded, by name
        cfg = timm.data.resolve_data_config({}, model=net)
        return net.eval(), timm.data.create_transform(**cfg), cfg["input_size"][-1]
    import torchvision.models as tvm

    weights = {"alexnet": tvm.AlexNet_Weights.IMAGENET1K_V1,
               "vgg16": tvm.VGG16_Weights.IMAGENET1K_V1,
               "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2}.get(name) or \
        tvm.get_model_weights(model_name).DEFAULT
    net = tvm.get_model(name if ":" not in name else model_name)
    net.load_state_dict(bb.imagenet())
    transform = weights.transforms()
    return net.eval(), transform, int(transform.crop_size[0])


def peer_top1(net, transform, paths: list[Path]) -> np.ndarray:
    from PIL import Image

    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), 32):
            x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + 32]])
            out.append(net(x).argmax(1).numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--backbones", default=",".join(CURATED),
                    help="curated names or torchvision:NAME / timm:NAME")
    ap.add_argument("--ablate", action="store_true",
                    help="also featx with ImageNet mean/std and bilinear resizing")
    args = ap.parse_args()
    if not (args.photos / "labels.csv").is_file():
        print(f"no labelled ImageNet photos at {args.photos} (labels.csv): nothing measured; "
              "pass --photos DIR", file=sys.stderr)
        return
    paths, labels = read_photos(args.photos)
    print(f"{len(paths)} labelled ImageNet photos from {shown(args.photos)}, "
          f"{torch.get_num_threads()} threads, float32")
    print(f"{'backbone':<22}{'input':>6}{'featx top-1':>13}{'peer top-1':>12}{'differ':>8}"
          f"{'featx s':>9}{'peer s':>8}")
    figures = []
    for name in args.backbones.split(","):
        bb = get_backbone(name)
        try:
            load_model(bb, "imagenet")
            net, transform, size = peer(name)
        except (WeightsError, RuntimeError, OSError) as exc:
            print(f"{name:<22} skipped: no ImageNet weights offline ({type(exc).__name__})")
            continue
        t = time.perf_counter()
        ours = featx_top1(name, paths, size)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        theirs = peer_top1(net, transform, paths)
        t_peer = time.perf_counter() - t
        a, b = 100 * (ours == labels).mean(), 100 * (theirs == labels).mean()
        differ = int((ours != theirs).sum())
        print(f"{name:<22}{size:>6}{a:>12.1f}%{b:>11.1f}%{differ:>8}{t_ours:>9.1f}{t_peer:>8.1f}")
        figures.append((name, a - b, 100 / len(paths)))
        if args.ablate:
            alt = dataclasses.replace(bb, name=f"{name}@imagenet-stats", mean=IMAGENET_MEAN,
                                      std=IMAGENET_STD, interpolation="bilinear")
            BACKBONES[alt.name] = alt
            wrong = featx_top1(alt.name, paths, size)
            print(f"{'  ImageNet mean/std, bilinear':<28}{100 * (wrong == labels).mean():>12.1f}%"
                  f"{'':>11} {int((wrong != theirs).sum()):>7}")
    for name, delta, one in figures:
        print(f"figure: {name}_top1_featx_minus_peer = {delta:+.1f} points "
              f"(goal within one photo, {one:.1f})")


if __name__ == "__main__":
    main()
