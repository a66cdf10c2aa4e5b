"""Fisher-vector encoding speed: featx against scikit-image, in one run.

    python benchmarks/fisher.py [--images 16]

N = 4,410 local features per image (AlexNet's 7-scale pyramid), D = 128 (PCA-reduced fc7),
K = 256 components (Yoo et al.): 65,536-d Fisher vectors. scikit-image's
``skimage.feature.fisher_vector`` takes a fitted scikit-learn ``GaussianMixture``; featx's
``fisher_vector`` takes the same parameters, batched over images. Both compute improved FVs;
their agreement is checked (scikit-image keeps all posteriors, VLFeat -- and featx -- drop those
below 1e-6, so they differ in the last digits).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture as SkGMM

from featx.encoders import fisher_vector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--n", type=int, default=4410)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=256)
    args = ap.parse_args()
    from skimage.feature import fisher_vector as sk_fisher_vector

    rng = np.random.default_rng(0)
    k, d, n = args.k, args.d, args.n
    gmm = SkGMM(k, covariance_type="diag")
    gmm.means_ = rng.normal(size=(k, d))
    gmm.covariances_ = rng.uniform(0.5, 2.0, (k, d))
    gmm.precisions_cholesky_ = 1 / np.sqrt(gmm.covariances_)
    gmm.weights_ = rng.dirichlet(np.full(k, 5.0))
    x = (rng.normal(size=(args.images, n, d)) * 1.3).astype(np.float32)

    t = time.perf_counter()
    ref = [sk_fisher_vector(x[i], gmm, improved=True) for i in range(args.images)]
    sk_ms = 1000 * (time.perf_counter() - t) / args.images

    means, variances, priors = (torch.tensor(a, dtype=torch.float32) for a in
                                (gmm.means_, gmm.covariances_, gmm.weights_))
    rows = [("scikit-image fisher_vector (one image at a time)", sk_ms)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        xs = torch.from_numpy(x).to(dev)
        p = [t.to(dev) for t in (means, variances, priors)]
        for batch in (1, min(8, args.images)):
            def run():
                return [fisher_vector(xs[i:i + batch], *p) for i in range(0, args.images, batch)]
            run()
            if dev == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = torch.cat(run())
            if dev == "cuda":
                torch.cuda.synchronize()
            rows.append((f"featx fisher_vector on {dev}, batch {batch}",
                         1000 * (time.perf_counter() - t) / args.images))
    # scikit-image orders [priors, means, variances]; compare the mean and variance blocks
    ours = out.cpu().numpy()
    sk = np.stack(ref)[:, k:]
    sk = sk / np.linalg.norm(sk, axis=1, keepdims=True)
    ours_n = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    sk_u = sk[:, : k * d].reshape(-1, k, d)
    print(f"N={n}, D={d}, K={k}: {2 * k * d:,}-d improved Fisher vectors, {args.images} images, "
          f"{torch.get_num_threads()} threads")
    print(f"{'what':<52}{'ms/image':>10}{'images/s':>10}{'vs skimage':>12}")
    for name, ms in rows:
        print(f"{name:<52}{ms:>10.2f}{1000 / ms:>10.1f}{sk_ms / ms:>11.2f}x")
    corr = np.mean([np.corrcoef(np.abs(sk_u[i].ravel()), np.abs(ours_n[i, : k * d]))[0, 1]
                    for i in range(len(ours))])
    print(f"agreement of mean blocks (|values| correlation): {corr:.4f}")


if __name__ == "__main__":
    main()
