"""Every featx representation on real labelled photos, under each classifier, against the
linear probe a user would write instead.

    python benchmarks/real_photos.py [--sets flowers,imagenette] [--data DIR] [--work DIR]
        [--classifiers hinge,logistic,logistic+std,hinge+std] [--C auto|C,C,...]
        [--input-size N] [--cl-dim D] [--only ROW,...] [--backbone efficientnet_lite0]

The sets (each a folder of ``train/<class>/`` and ``test/<class>/`` photos; ``--data DIR`` for
another): ``flowers``, the flower_photos dev set (``../shared/data/flowers/dev``: 5 classes,
60 train + 40 test photos a class, CC BY 2.0: classes the backbone was not trained on), and
``imagenette``, ``../shared/data/imagenette-dev`` (10 of ImageNet's own classes: 30 ImageNet
train photos a class, which the backbone saw, and 15 validation photos a class to test on,
which it did not; ImageNet's terms: measured here, never shipped). A set that is absent is
said and skipped. featx: every row ``make reproduce`` computes offline (global/pool, jitter,
centre, crops, CL on both candidate pairs with their F/C variants, direct max/sum-sqrt, SPP,
sign-quantised, MPP/NFK/CSF/MPP + SP over the head pyramid, scheme 2, the CL + fc joins), run
by the reproduction's own machinery (featx.reproduce's offline setup, pointed at the set),
and each row's encodings trained with every classifier of ``--classifiers`` (train-svm's
settings: ``hinge`` the default SVM, ``logistic`` = ``--loss logistic --multiclass
multinomial``, ``+std`` = ``--standardize``), C by 5-fold cross-validation on the training
photos (``--C``: the grid of every classifier; default each loss's ``--C auto``).

The peer (written here, as a user would): the backbone's pooled features (timm's network with
the shipped weights, fed by timm's own evaluation transform of its ``pretrained_cfg``),
standardised, scikit-learn LogisticRegression with C by 5-fold cross-validation over
10^-4..10^2. Same photos, same threads, float32 features. Prints a table a set (each row's
top-1 under each classifier, its difference to the probe, its C) and ``figure:`` lines for the
first classifier: ``featx_global_minus_probe`` (goal within ±0.5 points: the same features)
and ``best_featx_minus_probe`` (goal ≥ +1 point).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
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
    c, _, _ = choose_c(k, ytr, int(ytr.max()) + 1, AUTO_C)
    w, b = train_ovr(xtr, ytr, int(ytr.max()) + 1, c, k=k)
    return 100 * float((scores(xte, w, b).argmax(1) == yte).mean()), c


def shown(path: Path) -> str:
    """``path`` as given from beside the checkout (``../shared/...``) when it lies there: no
    machine's absolute path in a committed printout."""
    try:
        return "../" + str(path.resolve().relative_to(REPO.parent))
    except ValueError:
        return str(path)


DEFAULT_SETS = {  # name: (folder, what it measures)
    "flowers": (REPO.parent / "shared" / "data" / "flowers" / "dev",
                "flower photos: classes the backbone was not trained on"),
    "imagenette": (REPO.parent / "shared" / "data" / "imagenette-dev",
                   "ImageNet's own classes: train photos the backbone saw, validation photos "
                   "it did not"),
}

# the classifiers every row is trained with, on the same encodings (train-svm's settings);
# "hinge" is the row as the reproduction trains it
CLASSIFIERS = {
    "hinge": {},
    "logistic": {"loss": "logistic", "multiclass": "multinomial"},
    "logistic+std": {"loss": "logistic", "multiclass": "multinomial", "standardize": True},
    "hinge+std": {"standardize": True},
}


class Classifiers:
    """A reproduction that also trains each row's encodings with other classifiers (before
    its cleanup removes them), each C by the same cross-validation; results beside the
    row's in ``classifiers/<row>.json``."""

    def __init__(self, rep, names: list[str]):
        self.rep, self.names = rep, [n for n in names if n != "hinge"]
        inner_evaluate, inner_done = rep.evaluate, rep.done

        def evaluate(r, cache):
            result = inner_evaluate(r, cache)
            self.train(r, cache)
            return result

        def done(r):
            return inner_done(r) and self.path(rep.source(r)).is_file()

        rep.evaluate, rep.done = evaluate, done

    def path(self, r) -> Path:
        from featx.reproduce.rows import slug

        return self.rep.w / "classifiers" / f"{slug(r.name)}.json"

    def train(self, r, cache) -> None:
        from featx.reproduce.rows import slug
        from featx.reproduce.run import _c

        rep, s = self.rep, self.rep.s
        enc = rep.encodings(r, cache)
        out = {}
        for name in self.names:
            model = rep.w / f"svm-{slug(r.name)}-{name}.h5"
            rep.run("train-svm", enc[s.train], model, C=_c(s.C), memory_gb=s.memory_gb,
                    overwrite=True, **CLASSIFIERS[name])
            m = rep.run("evaluate", enc[s.test], model, memory_gb=s.memory_gb)
            from featx.io import load_svm

            out[name] = {"top1": 100 * m["top1"], "C": float(load_svm(model)[2]["C"]),
                         "log_loss": m.get("log_loss")}
        self.path(r).parent.mkdir(parents=True, exist_ok=True)
        self.path(r).write_text(json.dumps(out, indent=1) + "\n")

    def results(self) -> dict[str, dict]:
        return {name: json.loads(self.path(self.rep.source(r)).read_text())
                for name, r in self.rep.rows.items()}


def measure(args, name: str, data: Path, what: str) -> None:
    import featx.reproduce as rp
    from featx.reproduce.report import ours

    setup = dataclasses.replace(rp.offline_setup(REPO / "data" / "flowers-demo"),
                                name=f"real-{data.name}", root=data.resolve(), note="")
    changes = {k: v for k, v in (("input_size", args.input_size), ("cl_dim", args.cl_dim),
                                 ("fv_dim", args.fv_dim), ("components", args.components),
                                 ("C", args.c)) if v is not None}
    if args.fc_norm:
        changes["fc_power"] = args.fc_norm == "sqrt+l2"
    setup = dataclasses.replace(setup, **changes)
    only = {x.strip() for x in args.only.split(",")} if args.only else None
    rep = rp.Reproduction(setup, args.work, only)
    names = [c.strip() for c in args.classifiers.split(",")]
    extra = Classifiers(rep, names)
    t = time.perf_counter()
    results = rep.go()
    t_featx = time.perf_counter() - t
    table = extra.results()
    for row, r in results.items():
        table[row]["hinge"] = {"top1": ours(r), "C": r["C"]}

    tr, ytr, classes = split(data, "train")
    te, yte, _ = split(data, "test")
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
    print(f"== {name}: {what}")
    print(f"{len(tr)} training + {len(te)} test photos of {len(classes)} classes from "
          f"{shown(data)}; {setup.backbone} input {setup.input_size or 'default'}, CL PCA "
          f"{setup.cl_dim}-d, pyramid {setup.scales} scales, {setup.fv_dim}-d PCA, "
          f"K={setup.components}; C {setup.C}; {torch.get_num_threads()} threads; "
          f"one test photo = {one:.2f} points")
    print("top-1 (%) of each row's encodings under each classifier (C chosen by 5-fold "
          "cross-validation on the training photos), its difference to the probe, and C")
    print(f"{'row':<30}" + "".join(f"{n:>22}" for n in names) + f"{'dims':>9}")
    for row in sorted(results, key=lambda n: -table[n][names[0]]["top1"]):
        cells = "".join(f"{table[row][c]['top1']:>8.1f} ({table[row][c]['top1'] - probe:>+5.1f})"
                        f"{table[row][c]['C']:>7.3g}" for c in names)
        print(f"{row:<30}{cells}{results[row]['dim']:>9,}")
    print(f"{'linear probe (peer)':<30}{probe:>8.1f}{'':>8}{probe_c:>7.3g}{'':>{22 * (len(names) - 1)}}"
          f"{1280:>9,}")
    if not args.no_probe:
        for power, (acc, c) in crossed.items():
            label = f"  featx SVM on probe features, {'sqrt+L2' if power else 'L2'}"
            print(f"{label:<38}{acc:>8.1f} ({acc - probe:>+5.1f}){c:>7.3g}")
    print(f"featx {t_featx:.0f} s (every row and classifier, extraction included), probe "
          f"{t_probe:.0f} s")
    for c in names:
        best = max(results, key=lambda n: table[n][c]["top1"])
        glob = (f"global {table['CNN-Global'][c]['top1'] - probe:+.1f}, "
                if "CNN-Global" in results else "")
        print(f"{c}: {glob}best {table[best][c]['top1'] - probe:+.1f} ({best}) against the probe")
    default = names[0]
    if "CNN-Global" in results:
        print(f"figure: featx_global_minus_probe = "
              f"{table['CNN-Global'][default]['top1'] - probe:+.1f} points ({name}, {default}; "
              "goal within ±0.5)")
    best = max(results, key=lambda n: table[n][default]["top1"])
    print(f"figure: best_featx_minus_probe = {table[best][default]['top1'] - probe:+.1f} points "
          f"({name}, {default}: {best}; goal ≥ +1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS),
                    help=f"which of {', '.join(DEFAULT_SETS)} to measure (those present)")
    ap.add_argument("--data", type=Path, help="one folder of train/<class>, test/<class> "
                    "photos instead of --sets")
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
    ap.add_argument("--classifiers", default=",".join(CLASSIFIERS),
                    help="the classifiers of every row, the first the default "
                         f"({', '.join(CLASSIFIERS)})")
    ap.add_argument("--no-probe", action="store_true")
    args = ap.parse_args()
    unknown = {c.strip() for c in args.classifiers.split(",")} - set(CLASSIFIERS)
    if unknown:
        raise SystemExit(f"unknown classifier(s) {', '.join(sorted(unknown))}")
    sets = ({"data": (args.data, "the folder given")} if args.data else
            {n: DEFAULT_SETS[n] for n in (s.strip() for s in args.sets.split(","))})
    for name, (data, what) in sets.items():
        if not (data / "train").is_dir() or not (data / "test").is_dir():
            print(f"no real photos at {shown(data)} (train/<class>, test/<class>): {name} not "
                  "measured; pass --data DIR", file=sys.stderr)
            continue
        measure(args, name, data, what)


if __name__ == "__main__":
    main()
