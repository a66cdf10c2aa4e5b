"""How far scheme 2's trained guidance moves when one rounding changes (docs/reproduce.md).

    python benchmarks/guidance_stability.py [--work DIR] [--lr 0.01]

On the offline reproduction's own training data (the shipped flower photos' `head` pyramid,
projected by the run's PCA, the scales and channels `featx reproduce` trains on; extracted
into --work once, then reused), trains the guidance exactly as the reproduction does
(:func:`featx.fit.fit_guidance`, its defaults) and again with one rounding changed:

- on 1 thread instead of 2 (the same input; only the order of float sums differs);
- with one float16 step added to 1 in 10,000 stored input values (what another CPU's kernels
  do to the stored activations).

Prints the relative L2 distance between the two guidance weights after 1, 2, 5, 10 and the
run's epochs, with the held-out loss each ended at, and ``figure:`` lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from featx.fit import fit_guidance
from featx.reproduce import Reproduction, offline_setup
from featx.sampling import region_features

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / "work" / "guidance-stability")
    ap.add_argument("--lr", type=float, default=1e-2)
    args = ap.parse_args()
    s = offline_setup(REPO / "data" / "flowers-demo")
    rep = Reproduction(s, args.work)
    acts = rep.acts("pyr1")[s.train]  # resumes: extracted and fitted once
    layer = s.pyramid_layers[0]
    scales = tuple(range(min(s.guidance_scales, s.scales)))
    _, xs, labels = region_features([Path(p) for p in acts], layer, scales)
    classes = int(labels.max()) + 1

    def train(inputs, epochs: int, threads: int):
        torch.set_num_threads(threads)
        try:
            return fit_guidance(inputs, labels, classes, channels=s.guidance_channels,
                                epochs=epochs, lr=args.lr)
        finally:
            torch.set_num_threads(2)

    rng = np.random.default_rng(0)
    flipped = []
    for x in xs:  # one float16 step up in 1 of 10,000 stored values
        y = x.clone()
        y.view(torch.int16)[torch.from_numpy(rng.random(tuple(y.shape)) < 1e-4)] += 1
        flipped.append(y)

    def rel(a, b) -> float:
        return float((a.weight - b.weight).norm() / a.weight.norm())

    print(f"{len(labels)} training images, {'+'.join(str(x.shape[1]) for x in xs)} region "
          f"vectors of {xs[0].shape[2]}-d, K = {s.guidance_channels}, lr {args.lr:g}, "
          f"torch {torch.__version__}")
    print(f"\n{'epochs':>6}{'1 thread':>12}{'fp16 flips':>12}{'held-out loss (2 / 1 thread)':>32}")
    last = {}
    for epochs in sorted({1, 2, 5, 10, s.guidance_epochs}):
        base = train(xs, epochs, 2)
        one, flip = train(xs, epochs, 1), train(flipped, epochs, 2)
        last = {"thread": rel(base, one), "flip": rel(base, flip)}
        print(f"{epochs:>6}{last['thread']:>12.2e}{last['flip']:>12.2e}"
              f"{base.curve[-1]['heldout_loss']:>20.4f} / {one.curve[-1]['heldout_loss']:.4f}")
    print(f"\nfigure: guidance_moved_1_thread = {100 * last['thread']:.1f} % "
          f"(relative L2, after {s.guidance_epochs} epochs)")
    print(f"figure: guidance_moved_fp16_flips = {100 * last['flip']:.1f} %")


if __name__ == "__main__":
    main()
