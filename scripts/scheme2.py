"""Scheme 2 measured: trained guidance against the same layer untrained (random), paired by
seed, on train/test activation shards of a projected pyramid (extract --views pyramid
--project PCA). The encodings are scored by the same one-vs-rest linear SVMs (fixed C).

    python scripts/scheme2.py TRAIN_SHARDS TEST_SHARDS [--channels 16] [--seeds 5] [--C 10]

Prints one line per seed and the mean; docs/scheme2.md holds the numbers.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from featx import svm
from featx.encoders import guided_pool, normalize
from featx.fit import fit_guidance
from featx.io import shard_paths
from featx.sampling import region_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--layer", default=None)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--kernel", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--C", type=float, default=10.0)
    args = ap.parse_args()
    from featx.io import read_header

    train_paths, test_paths = shard_paths([args.train]), shard_paths([args.test])
    layer = args.layer or next(iter(read_header(train_paths[0])["pyramid_shapes"][0]))
    _, tr, ytr = region_features(train_paths, layer)
    _, te, yte = region_features(test_paths, layer)
    classes = int(max(ytr.max(), yte.max())) + 1

    def encode(g, xs):
        return normalize(torch.cat([guided_pool([x[i:i + 64].float() for x in xs], g.weight,
                                                g.bias) for i in range(0, xs[0].shape[0], 64)]))

    def accuracy(g) -> float:
        w, b = svm.train_ovr(encode(g, tr).numpy(), ytr, classes, c=args.C)
        return float(np.mean(svm.scores(encode(g, te).numpy(), w, b).argmax(1) == yte))

    print(f"{layer}: {len(ytr)} train / {len(yte)} test images, "
          f"{'+'.join(str(x.shape[1]) for x in tr)} regions of {tr[0].shape[2]}-d, "
          f"K = {args.channels}, {args.kernel}x{args.kernel}, C = {args.C:g}")
    rows = []
    for seed in range(args.seeds):
        common = dict(channels=args.channels, kernel=args.kernel, seed=seed)
        trained = fit_guidance(tr, ytr, classes, epochs=args.epochs, **common)
        random = fit_guidance(tr, ytr, classes, epochs=0, **common)
        rows.append((accuracy(trained), accuracy(random)))
        print(f"seed {seed}: trained {100 * rows[-1][0]:.1f}, random {100 * rows[-1][1]:.1f} "
              f"(kept epoch {trained.best_epoch} of {len(trained.curve)})", flush=True)
    t, r = np.array(rows).T
    print(f"mean: trained {100 * t.mean():.1f} ± {100 * t.std():.1f}, random "
          f"{100 * r.mean():.1f} ± {100 * r.std():.1f}; trained better in {(t > r).sum()} of "
          f"{len(t)} seeds")


if __name__ == "__main__":
    main()
