"""The pictures of docs/maps.md and docs/scheme2.md, made by featx on a controlled set of real
photos: does a map put the evidence where the object is?

    python scripts/maps_demo.py --work work/maps-demo --out docs/img

The set: 96 images of 256 x 256 px cut from scikit-image's public-domain sample photos of
textures and scenes (brick, grass, gravel, the Hubble deep field, coffee, rocket...). In half
of them ("cat") a 96 x 96 crop of the cat photo (chelsea) is pasted at a random place; the
other half ("none") are background only. EfficientNet-Lite0 ImageNet weights (offline), the
`head` pyramid over 3 scales, then:
- MPP (PCA 32-d, K = 16) -> train-svm -> `featx maps --gmm`: confidence maps (Yoo §4.5);
- fit-guidance -> encode --guidance -> train-svm -> `featx maps --guidance`: scheme-2
  contribution maps and the guidance channels;
- conv stage6 -> stage7 cross-layer pooling -> `featx maps --pca`: scheme-1 contributions;
- evaluate --plots: the confusion matrix (MPP), and precision-recall curves on a second,
  multi-label set (a cat and a coffee cup pasted, either or both; MPP, the same PCA and GMM).
Since we pasted the cat, we know where the evidence is; the script prints, per map kind, the
fraction of test "cat" images whose map peaks inside the pasted box.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def featx(*args) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "featx", "-q", *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def _backgrounds(names) -> list[np.ndarray]:
    import skimage.data as d

    images = [getattr(d, name)() for name in names]
    return [np.stack([b] * 3, -1) if b.ndim == 2 else b[..., :3] for b in images]


def _object(name: str, box: tuple, side: int) -> np.ndarray:
    import skimage.data as d

    return np.asarray(Image.fromarray(getattr(d, name)()).crop(box).resize((side, side)))


def make_set(root: Path, n: int, seed: int = 0) -> dict[str, list]:
    backgrounds = _backgrounds(("brick", "grass", "gravel", "hubble_deep_field", "coffee",
                                "rocket", "astronaut", "immunohistochemistry", "colorwheel"))
    cat = _object("chelsea", (80, 30, 380, 300), 96)
    rng = np.random.default_rng(seed)
    boxes = {}
    for split in ("train", "test"):
        for i in range(n):
            bg = backgrounds[rng.integers(len(backgrounds))]
            y, x = rng.integers(0, bg.shape[0] - 256), rng.integers(0, bg.shape[1] - 256)
            img = bg[y:y + 256, x:x + 256].copy()
            label = "cat" if i % 2 == 0 else "none"
            if label == "cat":
                py, px = rng.integers(0, 256 - 96, 2)
                img[py:py + 96, px:px + 96] = cat
                boxes[f"{label}/{split}-{i:03d}"] = [int(px), int(py), int(px) + 96,
                                                     int(py) + 96]
            (root / split / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / split / label / f"{split}-{i:03d}.png")
    return boxes


def make_multilabel_set(root: Path, n: int, seed: int = 1) -> None:
    """Multi-label: a cat (chelsea) and a coffee cup pasted (80 px) on background photos, a
    third of the images with each and a third with both; root/<split>.csv lists
    path,label[,label] (featx's folder adapter)."""
    backgrounds = _backgrounds(("brick", "grass", "gravel", "hubble_deep_field", "rocket",
                                "immunohistochemistry", "colorwheel"))
    objects = {"cat": _object("chelsea", (80, 30, 380, 300), 80),
               "cup": _object("coffee", (160, 20, 460, 320), 80)}
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            bg = backgrounds[rng.integers(len(backgrounds))]
            y, x = rng.integers(0, bg.shape[0] - 256), rng.integers(0, bg.shape[1] - 256)
            img = bg[y:y + 256, x:x + 256].copy()
            names = [["cat"], ["cup"], ["cat", "cup"]][i % 3]
            halves = rng.permutation(2)  # each object in its own half, left or right
            for name, half in zip(names, halves):
                py, px = rng.integers(0, 256 - 80), 128 * half + rng.integers(0, 128 - 80)
                img[py:py + 80, px:px + 80] = objects[name]
            Image.fromarray(img).save(root / split / f"{i:03d}.png")
            rows.append(",".join([f"{split}/{i:03d}.png", *names]))
        (root / f"{split}.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")


def _key(image_id: str) -> str:
    """class/stem of an image id or path, however the dataset adapter spells ids."""
    p = Path(image_id)
    return f"{p.parent.name}/{p.stem}"


def peaks_inside(maps_h5: str, boxes: dict, panel: int = 0) -> tuple[int, int]:
    from featx.io import load_maps

    maps, _ = load_maps(maps_h5)
    hit = total = 0
    for image_id, m in maps.items():
        box = boxes.get(_key(image_id))
        if box is None:
            continue
        h, w = m.shape[1:]
        i, j = np.unravel_index(m[panel].argmax(), (h, w))
        x, y = (j + 0.5) / w * 256, (i + 0.5) / h * 256
        hit += box[0] <= x <= box[2] and box[1] <= y <= box[3]
        total += 1
    return hit, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("work/maps-demo"))
    ap.add_argument("--out", type=Path, default=None, help="copy a picture of each kind here")
    ap.add_argument("--images", type=int, default=48, help="images a split")
    args = ap.parse_args()
    w = args.work
    shutil.rmtree(w, ignore_errors=True)
    boxes = make_set(w / "data", args.images)
    ds = lambda split: ["--dataset", "folder", "--root", w / "data" / split]  # noqa: E731
    bb = ["--backbone", "efficientnet_lite0", "--weights", "imagenet"]
    pyr = ["--views", "pyramid", "--scales", "3", "--layers", "head"]
    raw = featx("extract", *ds("train"), *bb, *pyr, "-o", w / "raw-train")
    pca = featx("fit-pca", *raw, "--layer", "head", "--view", "pyramid", "--local", "dense",
                "--dim", "32", "-o", w / "pca.h5")[0]
    acts = {s: featx("extract", *ds(s), *bb, *pyr, "--project", pca, "-o", w / f"pyr-{s}")
            for s in ("train", "test")}
    gmm = featx("fit-gmm", *acts["train"], "--pca", pca, "--components", "16",
                "-o", w / "gmm.h5")[0]
    results = {}

    def chain(name, encode_args, acts_of):
        enc = {s: featx("encode", *acts_of[s], *encode_args, "-o", w / f"enc-{name}-{s}")
               for s in ("train", "test")}
        model = featx("train-svm", *enc["train"], "--C", "auto", "-o", w / f"svm-{name}.h5")[0]
        out = featx("evaluate", *enc["test"], "--model", model, "--plots", w / f"plots-{name}")
        results[name] = json.loads(Path(out[0]).read_text())["top1"]
        return model, out

    mpp_model, mpp_plots = chain("mpp", ["--method", "mpp", "--gmm", gmm], acts)
    guidance = featx("fit-guidance", *acts["train"], "--channels", "16", "-o", w / "guidance.h5")[0]
    s2_model, _ = chain("scheme2", ["--method", "cross-layer", "--guidance", guidance], acts)
    cl = {s: featx("extract", *ds(s), *bb, "--layers", "stage6,stage7", "--input-size", "448",
                   "-o", w / f"cl-{s}") for s in ("train", "test")}
    cl_pca = featx("fit-pca", *cl["train"], "--layer", "stage6", "--dim", "64", "-o",
                   w / "pca-cl.h5")[0]
    cl_model, _ = chain("cl", ["--method", "cross-layer", "--pca", cl_pca], cl)

    test_cat = ["--classes", "cat", "--limit", "24"]
    maps = {
        "confidence": featx("maps", *acts["test"], "--model", mpp_model, "--gmm", gmm,
                            *test_cat, "-o", w / "maps-confidence"),
        "scheme 2 contribution": featx("maps", *acts["test"], "--model", s2_model,
                                       "--guidance", guidance, *test_cat,
                                       "-o", w / "maps-scheme2"),
        "scheme 1 contribution": featx("maps", *cl["test"], "--model", cl_model, "--pca", cl_pca,
                                       *test_cat, "-o", w / "maps-cl"),
        "guidance channels": featx("maps", *acts["test"], "--guidance", guidance, "--top", "3",
                                   "--limit", "4", "-o", w / "maps-guidance"),
    }
    # precision-recall curves: the multi-label set, MPP with the same PCA and GMM
    make_multilabel_set(w / "multi", args.images)
    ml = {s: featx("extract", "--dataset", "folder", "--root", w / "multi" / f"{s}.csv", *bb,
                   *pyr, "--project", pca, "-o", w / f"ml-{s}") for s in ("train", "test")}
    ml_enc = {s: featx("encode", *ml[s], "--method", "mpp", "--gmm", gmm, "-o",
                       w / f"enc-ml-{s}") for s in ("train", "test")}
    ml_model = featx("train-svm", *ml_enc["train"], "--C", "auto", "-o", w / "svm-ml.h5")[0]
    ml_plots = featx("evaluate", *ml_enc["test"], "--model", ml_model, "--plots", w / "plots-ml")
    ml_metrics = json.loads(Path(ml_plots[0]).read_text())
    print("multi-label MPP test AP (11-pt): " + ", ".join(
        f"{c} {100 * a:.1f}" for c, a in zip(ml_metrics["classes"], ml_metrics["AP"])))
    print("test top-1: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in results.items()))
    for kind, paths in maps.items():
        if kind == "guidance channels":
            continue
        hit, total = peaks_inside(paths[-1], {k: v for k, v in boxes.items()
                                              if k.startswith("cat/test")})
        print(f"{kind}: the map's peak lies in the pasted cat in {hit} of {total} test cat images")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        picks = {"confidence": "maps-confidence", "scheme 2 contribution": "maps-scheme2",
                 "scheme 1 contribution": "maps-cl", "guidance channels": "maps-guidance"}
        for kind, paths in maps.items():
            png = next(p for p in paths if p.endswith(".png"))
            shutil.copy(png, args.out / f"demo-{picks[kind]}.png")
        shutil.copy(next(p for p in mpp_plots if p.endswith(".png")),
                    args.out / "demo-confusion.png")
        for p in ml_plots:
            if p.endswith(".png"):
                # pr-NNN-<class>.png (NNN: the class index) -> demo-pr-<class>.png
                shutil.copy(p, args.out / f"demo-{re.sub(r'^pr-[0-9]{3}-', 'pr-', Path(p).name)}")
        print(f"pictures copied to {args.out}")


if __name__ == "__main__":
    main()
