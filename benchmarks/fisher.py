"""Fisher-vector encoding speed: featx against scikit-image, in one run.

    python benchmarks/fisher.py [--images 8] [--repeat 5] [--busy 2]

``--busy N`` runs it all beside N processes that spin (a loaded machine), started and
stopped here; featx then waits passively in OpenMP, as the command line does on a machine
whose cores are taken (:func:`featx.device.wait_politely_when_busy`).

N = 4,410 local features per image (AlexNet's 7-scale pyramid), D = 128 (PCA-reduced fc7),
K = 256 components (Yoo et al.): 65,536-d Fisher vectors. The features are drawn from the
mixture itself, in two regimes:

- peaked: well-separated components, a handful of posteriors >= 1e-6 per feature (as with real
  PCA-reduced fc7 under a GMM fitted to it);
- diffuse: overlapping components, about 100 of the 256 posteriors kept per feature.

scikit-image's ``skimage.feature.fisher_vector`` (one image at a time, the way it is called)
takes a scikit-learn ``GaussianMixture`` with the same parameters, in float32 (what fitting
scikit-learn's mixture on float32 features gives): both compute in float32. featx runs one image a call
and 8 a call (the encode stage's batches); its figure is the slower of the two. Agreement is
measured against VLFeat's formulas in float64 (posteriors below 1e-6 dropped, as ``vl_fisher``).
The limit: the E-step GEMM ([x, x^2] (N, 2D) times (2D, K)) is the one step no encoder can skip;
it is timed alone, by the route featx takes (``featx.linalg.addmm``: oneDNN on the CPU) and by
``torch.addmm`` (MKL), and their rates are compared with a large square GEMM's by each route.
Then featx's encoder is timed step by step on one image (what stops it nearing the GEMM).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SkGMM

from featx.device import keep_host_memory, wait_politely_when_busy
from timing import best_of

REGIMES = {"peaked": 0.45, "diffuse": 0.2}  # scale of the component means
GOALS = {"peaked": 3.0, "diffuse": 2.0}


def mixture(k: int, d: int, scale: float, rng) -> tuple[np.ndarray, ...]:
    return (rng.normal(size=(k, d)) * scale, rng.uniform(0.5, 2.0, (k, d)),
            rng.dirichlet(np.full(k, 5.0)))


def vlfeat_fv(x: np.ndarray, means, variances, priors) -> np.ndarray:
    """VLFeat's improved FV in float64, vectorised (posteriors < 1e-6 dropped)."""
    prec = 1 / variances
    lp = (np.log(priors) - 0.5 * (np.log(2 * np.pi * variances).sum(1) + (means ** 2 * prec).sum(1))
          + x @ (means * prec).T - 0.5 * (x * x) @ prec.T)
    g = np.exp(lp - logsumexp(lp, 1, keepdims=True))
    g[g < 1e-6] = 0
    n = len(x)
    s0, s1, s2 = g.sum(0)[:, None], g.T @ x, g.T @ (x * x)
    u = (s1 - means * s0) / (np.sqrt(variances) * n * np.sqrt(priors)[:, None])
    v = ((s2 - 2 * means * s1 + means ** 2 * s0) / variances - s0) / (n * np.sqrt(2 * priors)[:, None])
    fv = np.concatenate([u.ravel(), v.ravel()])
    fv = np.sign(fv) * np.sqrt(np.abs(fv))
    return fv / np.linalg.norm(fv)


def _spin() -> None:
    while True:
        pass


def gemm_rates(repeat: int) -> tuple[float, float]:
    """FLOP/s of a 2048^3 GEMM by featx's route and by torch's (MKL on x86 CPUs)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    flops = 2 * 2048 ** 3
    return (flops / best_of(lambda: addmm(None, a, b), repeat)[0],
            flops / best_of(lambda: a @ b, repeat)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n", type=int, default=4410)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--busy", type=int, default=0,
                    help="run beside this many busy processes (started here, stopped at the end)")
    args = ap.parse_args()
    busy = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    if busy:
        time.sleep(1.0)
    try:
        run(args)
    finally:
        for p in busy:
            p.terminate()


def run(args) -> None:
    # as the command line does: passive OpenMP waiting when the cores are taken, set before
    # torch loads; glibc keeps freed host memory
    polite = wait_politely_when_busy()
    global torch, addmm, fisher_vector
    import torch

    from featx.encoders import fisher_vector
    from featx.linalg import addmm
    from skimage.feature import fisher_vector as sk_fisher_vector
    keep_host_memory()

    k, d, n, b = args.k, args.d, args.n, args.images
    print(f"N={n}, D={d}, K={k}: {2 * k * d:,}-d improved Fisher vectors, {b} images, "
          f"{torch.get_num_threads()} threads; best of {args.repeat} (worst in brackets), ms/image")
    print(f"beside {args.busy} busy process(es); OpenMP wait policy: "
          f"{'passive (set by featx: the cores are taken)' if polite else 'default'}")
    rate, rate_mkl = gemm_rates(args.repeat)
    xx = torch.randn(n, 2 * d)
    w = torch.randn(2 * d, k)
    bias = torch.randn(k)
    gemm = best_of(lambda: addmm(bias, xx, w), 20)[0]
    gemm_mkl = best_of(lambda: torch.addmm(bias, xx, w), 20)[0]
    flops = 2 * n * 2 * d * k
    print(f"E-step GEMM: {flops / 1e9:.2f} GFLOP, {1000 * gemm:.2f} ms = {flops / gemm / 1e9:.0f} "
          f"GFLOP/s (2048^3 GEMM: {rate / 1e9:.0f} GFLOP/s); torch.addmm: {1000 * gemm_mkl:.2f} "
          f"ms = {flops / gemm_mkl / 1e9:.0f} GFLOP/s (2048^3: {rate_mkl / 1e9:.0f})")
    figures = []
    for regime, scale in REGIMES.items():
        rng = np.random.default_rng(0)
        means, variances, priors = mixture(k, d, scale, rng)
        z = rng.choice(k, size=(b, n), p=priors)
        x = (means[z] + np.sqrt(variances[z]) * rng.normal(size=(b, n, d))).astype(np.float32)
        # like for like: the peer's mixture in float32, as scikit-learn's GaussianMixture
        # fitted on float32 features holds it (it keeps float32), so scikit-image computes in
        # float32 as featx does (float64 parameters made it compute in float64: 43 ms against
        # 19 ms an image, the figures before 2026-12-01)
        gmm = SkGMM(k, covariance_type="diag")
        gmm.means_, gmm.covariances_, gmm.weights_ = (a.astype(np.float32) for a in
                                                      (means, variances, priors))
        gmm.precisions_cholesky_ = (1 / np.sqrt(variances)).astype(np.float32)
        sk, sk_worst = best_of(lambda: [sk_fisher_vector(x[i], gmm, improved=True)
                                        for i in range(b)], max(1, args.repeat // 2))
        xs = torch.from_numpy(x)
        p = [torch.tensor(a, dtype=torch.float32) for a in (means, variances, priors)]
        rows = [("scikit-image fisher_vector", sk, sk_worst)]
        for batch in (1, b):
            t, worst = best_of(lambda: [fisher_vector(xs[i:i + batch], *p)
                                        for i in range(0, b, batch)], args.repeat)
            rows.append((f"featx fisher_vector, {batch} image(s) a call", t, worst))
        ours = fisher_vector(xs, *p).numpy()
        err = max(np.abs(ours[i] - vlfeat_fv(x[i].astype(np.float64), means, variances, priors)).max()
                  for i in range(min(b, 2)))
        kept = _kept(xs[0], p)
        print(f"\n{regime}: {kept:.1f} of {k} posteriors >= 1e-6 per feature")
        for name, t, worst in rows:
            print(f"  {name:<40}{1000 * t / b:>8.2f} ({1000 * worst / b:.2f}){sk / t:>7.2f}x")
        slowest = max(t for _, t, _ in rows[1:]) / b
        print(f"  featx = {slowest / gemm:.2f}x the E-step GEMM alone ({1000 * gemm:.2f} ms); "
              f"max |featx - VLFeat float64| = {err:.1e}")
        print("  featx, one image, step by step (each timed alone, best of 20), ms:")
        for name, t in steps(xs[0], p, 20):
            print(f"    {name:<44}{1000 * t:>8.2f}")
        loaded = f"_beside_{args.busy}_busy" if args.busy else ""
        figures.append((f"fisher_vs_skimage_{regime}{loaded}", f"{sk / b / slowest:.1f}x",
                        "1x" if args.busy else f"{GOALS[regime]:g}x"))
        figures.append((f"fisher_vs_vlfeat_max_error_{regime}", f"{err:.1e}", "1e-4"))
    print()
    for name, value, goal in figures:
        print(f"figure: {name} = {value} (goal {goal})")


def steps(x: torch.Tensor, params, repeat: int) -> list[tuple[str, float]]:
    """featx's fisher_vector on one image, step by step as it runs them (one block: N <
    BLOCK_ROWS), each step timed alone on its real inputs: best seconds."""
    from featx.encoders.fisher import _KEEP_ABOVE, _block_moments, normalize
    from featx.encoders.gaussian import augment, density_params

    means, variances, priors = params
    bias, weights = density_params(means, variances, priors.log())
    xx = augment(x)
    logp = addmm(bias, xx, weights)
    g = logp.softmax(1)
    keep = g > _KEEP_ABOVE
    sparse = int(keep.sum()) <= 0.05 * g.numel()
    s0, s12 = _block_moments(g.clone(), xx, 1, None)
    d, n = x.shape[1], x.shape[0]

    def combine():
        a, b = s0.double().view(1, -1, 1), s12.double().view(1, -1, 2 * d)
        s1, s2 = b[..., :d], b[..., d:]
        mu, var, pi = means.double(), variances.double(), priors.double()
        u = (s1 - mu * a) / (var.sqrt() * n * pi.sqrt()[:, None])
        v = ((s2 - 2 * mu * s1 + mu * mu * a) / var - a) / (n * (2 * pi).sqrt()[:, None])
        return normalize(torch.cat([u.flatten(1), v.flatten(1)], 1).to(torch.float32))

    parts = [
        ("GMM constants (density_params)", lambda: density_params(means, variances,
                                                                  priors.log())),
        ("[x, x^2] (augment)", lambda: augment(x)),
        ("E-step GEMM (addmm)", lambda: addmm(bias, xx, weights)),
        ("softmax (exp of N x K)", lambda: logp.softmax(1)),
        ("posteriors kept (g > 1e-6, count)", lambda: int((g > _KEEP_ABOVE).sum())),
        (f"moments ({'sparse' if sparse else 'dense'}: _block_moments)",
         lambda: _block_moments(g.clone(), xx, 1, sparse)),
        ("  of which: the kept pairs' indices (nonzero)",
         lambda: (g > _KEEP_ABOVE).nonzero(as_tuple=True)),
        ("  of which: copy of g (the timing's)", lambda: g.clone()),
        ("combine in float64, sqrt, L2", combine),
    ]
    return [(name, best_of(fn, repeat)[0]) for name, fn in parts]


def _kept(x: torch.Tensor, params) -> float:
    from featx.fit import posteriors
    return (posteriors(x, *params) >= 1e-6).sum(1).float().mean().item()


if __name__ == "__main__":
    main()
