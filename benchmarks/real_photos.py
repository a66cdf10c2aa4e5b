"""Every featx representation on real labelled photos, against the linear probe a user would
write instead.

    python benchmarks/real_photos.py [--data DIR] [--work DIR] [--input-size N] [--cl-dim D]
        [--only ROW,...] [--backbone efficientnet_lite0]

``--data`` is a folder of ``train/<class>/`` and ``test/<class>/`` photos (default: the
flower_photos dev set, ``../shared/data/flowers/dev``: 5 classes, 60 train + 40 test photos a
class, CC BY 2.0). featx: every row ``make reproduce`` computes offline (global/pool, jitter,
centre, crops, CL on both candidate pairs with their F/C variants, direct max/sum-sqrt, SPP,
sign-quantised, MPP/NFK/CSF/MPP + SP over the head pyramid, scheme 2, the CL + fc joins), run
by the reproduction's own machinery (featx.reproduce's offline setup, pointed at
``--data``), each row's SVM C by 5-fold cross-validation on the training photos.

The peer (written here, as a user would): the backbone's pooled features (timm's network with
the shipped weights, fed by timm's own evaluation transform of its ``pretrained_cfg``),
standardised, scikit-learn LogisticRegression with C by 5-fold cross-validation over
10^-4..10^2. Same photos, same threads, float32 features. Prints the table and ``figure:``
lines: ``featx_global_minus_probe`` (goal within ±0.5 points: the same features) and
``best_featx_minus_probe`` (goal ≥ +1 point).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flowers" / "dev"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def split(root: Path, name: str) -> tuple[list[Path], np.ndarray, list[str]]:
    classes = sorted(d.name for d in (root / name).iterdir() if d.is_dir())
    paths, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (root / name / c).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [k] * len(files)
    return paths, np.array(labels), classes


def probe_features(paths: list[Path], backbone: str) -> np.ndarray:
    """The backbone's pooled features of each photo, through timm's own evaluation transform."""
    import timm
    from PIL import Image

    from featx.backbones import get_backbone
    from featx.backbones.efficientnet_lite import TIMM_NAME

    if backbone != "efficientnet_lite0":
        raise SystemExit("the probe peer is written for the offline backbone, efficientnet_lite0")
    net = timm.create_model(TIMM_NAME)
    net.load_state_dict(get_backbone(backbone).imagenet())
    net.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=net))
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), 32):
            x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + 32]])
            out.append(net.forward_head(net.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(out).astype(np.float32)


def linear_probe(xtr, ytr, xte, yte, seed: int = 0) -> tuple[float, float]:
    """Top-1 (%) of standardised features + LogisticRegression, C by 5-fold CV; and the C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    grid = GridSearchCV(pipe, {"logisticregression__C": np.logspace(-4, 2, 13)},
                        cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    grid.fit(xtr, ytr)
    return 100 * float((grid.predict(xte) == yte).mean()), \
        float(grid.best_params_["logisticregression__C"])


def featx_svm(xtr, ytr, xte, yte, power: bool) -> tuple[float, float]:
    """Top-1 (%) and C of featx's classifier (L2, with or without the signed square root; SVM
    with C by 5-fold CV on the Gram matrix, as train-svm --C auto) on given features."""
    from featx.encoders.pooling import normalize
    from featx.svm import AUTO_C, choose_c, gram, scores, train_ovr

    xtr, xte = (normalize(torch.from_numpy(x), power=power).numpy() for x in (xtr, xte))
    k = gram(xtr, torch.device("cpu"))
    c, _ = choose_c(k, ytr, int(ytr.max()) + 1, AUTO_C)
    w, b = train_ovr(xtr, ytr, int(ytr.max()) + 1, c, k=k)
    return 100 * float((scores(xte, w, b).argmax(1) == yte).mean()), c


def shown(path: Path) -> str:
    """``path`` as given from beside the checkout (``../shared/...``) when it lies there: no
    machine's absolute path in a committed printout."""
    try:
        return "../" + str(path.resolve().relative_to(REPO.parent))
    except ValueError:
        return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=REPO / "work" / "real-photos")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--input-size", type=int, help="featx's input size (default: the "
                    "offline reproduction's)")
    ap.add_argument("--cl-dim", type=int, help="cross-layer PCA dimension")
    ap.add_argument("--fv-dim", type=int, help="the pyramid's PCA dimension (Fisher vectors)")
    ap.add_argument("--components", type=int, help="GMM components (Fisher vectors)")
    ap.add_argument("--only", help="comma-separated rows (and what they need)")
    ap.add_argument("--fc-norm", choices=("sqrt+l2", "l2"),
                    help="normalisation of the fc baselines' encodings")
    ap.add_argument("--C", dest="c", help="train-svm --C of every row (default: auto)")
    ap.add_argument("--no-probe", action="store_true")
    args = ap.parse_args()
    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        print(f"no real photos at {args.data} (train/<class>, test/<class>): nothing measured; "
              "pass --data DIR", file=sys.stderr)
        return
    import featx.reproduce as rp
    from featx.reproduce.report import ours

    setup = dataclasses.replace(rp.offline_setup(REPO / "data" / "flowers-demo"), name=f"real-{args.data.name}",
                                root=args.data.resolve(), note="")
    changes = {k: v for k, v in (("input_size", args.input_size), ("cl_dim", args.cl_dim),
                                 ("fv_dim", args.fv_dim), ("components", args.components),
                                 ("C", args.c)) if v is not None}
    if args.fc_norm:
        changes["fc_power"] = args.fc_norm == "sqrt+l2"
    setup = dataclasses.replace(setup, **changes)
    only = {x.strip() for x in args.only.split(",")} if args.only else None
    rep = rp.Reproduction(setup, args.work, only)
    t = time.perf_counter()
    results = rep.go()
    t_featx = time.perf_counter() - t

    tr, ytr, classes = split(args.data, "train")
    te, yte, _ = split(args.data, "test")
    probe = probe_c = float("nan")
    t_probe = 0.0
    if not args.no_probe:
        t = time.perf_counter()
        f = probe_features(tr + te, args.backbone)
        probe, probe_c = linear_probe(f[:len(tr)], ytr, f[len(tr):], yte)
        t_probe = time.perf_counter() - t
        # where a gap to the probe comes from: featx's classifier on the probe's features
        crossed = {power: featx_svm(f[:len(tr)], ytr, f[len(tr):], yte, power)
                   for power in (True, False)}

    one = 100 / len(te)
    print(f"{len(tr)} training + {len(te)} test photos of {len(classes)} classes from "
          f"{shown(args.data)}; {setup.backbone} input {setup.input_size or 'default'}, CL PCA "
          f"{setup.cl_dim}-d, pyramid {setup.scales} scales, {setup.fv_dim}-d PCA, "
          f"K={setup.components}; C {setup.C}; {torch.get_num_threads()} threads; "
          f"one test photo = {one:.2f} points")
    print(f"{'row':<30}{'top-1':>7}{'- probe':>9}{'dims':>9}{'C':>9}")
    for name in sorted(results, key=lambda n: -ours(results[n])):
        r = results[name]
        print(f"{name:<30}{ours(r):>7.1f}{ours(r) - probe:>+9.1f}{r['dim']:>9,}"
              f"{r['C']:>9.3g}")
    print(f"{'linear probe (peer)':<30}{probe:>7.1f}{'':>9}{1280:>9,}{probe_c:>9.3g}")
    if not args.no_probe:
        for power, (acc, c) in crossed.items():
            label = f"  featx SVM on probe features, {'sqrt+L2' if power else 'L2'}"
            print(f"{label:<30}{acc:>7.1f}{acc - probe:>+9.1f}{1280:>9,}{c:>9.3g}")
    print(f"featx {t_featx:.0f} s (every row, extraction included), probe {t_probe:.0f} s")
    best = max(results, key=lambda n: ours(results[n]))
    if "CNN-Global" in results:
        print(f"figure: featx_global_minus_probe = "
              f"{ours(results['CNN-Global']) - probe:+.1f} points (goal within ±0.5)")
    print(f"figure: best_featx_minus_probe = {ours(results[best]) - probe:+.1f} points "
          f"({best}; goal ≥ +1)")


if __name__ == "__main__":
    main()
