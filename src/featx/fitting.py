"""The fit-pca and fit-gmm stages: sample local features from shards, fit, save with provenance."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import featx
from featx.errors import ProvenanceError
from featx.fit import PCA, GaussianMixture
from featx.local import LocalSpec, activation_headers, check_activations_fit, default_local
from featx.local import sample_local_features
from featx.models import check_model_output, file_digest, load_pca, save_gmm, save_pca
from featx.runtime import resolve_device
from featx.shards import shard_paths

log = logging.getLogger(__name__)


def fit_pca_stage(inputs: Sequence[str], out: str | Path, *, layer: str, view: str = "whole",
                  local: str | None = None, dim: int = 500, per_image: int = 100,
                  whiten: bool = False, seed: int = 0, device: str = "auto",
                  overwrite: bool = False, command: str = "") -> Path:
    out = check_model_output(out, overwrite)
    paths = shard_paths(inputs)
    head = activation_headers(paths, layer, view)
    spec = LocalSpec.parse(local) if local else default_local(head["backbone"], layer)
    t = time.perf_counter()
    x = sample_local_features(paths, layer, view, spec, per_image, seed)
    log.info("sampled %d local features of %d dims in %.1f s", *x.shape, time.perf_counter() - t)
    t = time.perf_counter()
    pca = PCA(n_components=dim, whiten=whiten, device=str(resolve_device(device))).fit(x)
    log.info("PCA %d -> %d dims in %.1f s; %.1f%% of the variance kept", x.shape[1], dim,
             time.perf_counter() - t, 100 * pca.explained_variance_ratio_.sum().item())
    return save_pca(out, pca, {
        "backbone": head["backbone"], "weights": head["weights"], "input_size": head["input_size"],
        "layer": layer, "layer_shape": head["layer_shapes"][layer], "view": view,
        "local": str(spec), "input_dim": x.shape[1], "dim": dim, "per_image": per_image,
        "seed": seed, "shards": [str(p) for p in paths], "featx_version": featx.__version__,
        "command": command,
    })


def fit_gmm_stage(inputs: Sequence[str], out: str | Path, *, pca_path: str | Path,
                  components: int = 256, per_image: int = 100, max_iter: int = 100,
                  tol: float = 1e-3, n_init: int = 1, var_floor: float = 1e-4, seed: int = 0,
                  device: str = "auto", overwrite: bool = False, command: str = "") -> Path:
    out = check_model_output(out, overwrite)
    dev = str(resolve_device(device))
    pca, pattrs = load_pca(pca_path, dev)
    paths = shard_paths(inputs)
    head = activation_headers(paths, pattrs["layer"], pattrs["view"])
    check_activations_fit(pattrs, head, str(pca_path))
    if head.get("projected") and head["projected"] != file_digest(pca_path):
        raise ProvenanceError(f"the activations were projected (extract --project) with another "
                              f"PCA than {pca_path}; pass that PCA")
    spec = LocalSpec.parse(pattrs["local"])
    t = time.perf_counter()
    x = sample_local_features(paths, pattrs["layer"], pattrs["view"], spec, per_image, seed,
                              transform=pca.transform)
    log.info("sampled %d PCA-reduced local features (%d-d) in %.1f s", *x.shape,
             time.perf_counter() - t)
    t = time.perf_counter()
    gmm = GaussianMixture(n_components=components, max_iter=max_iter, tol=tol, n_init=n_init,
                          var_floor=var_floor, seed=seed, device=dev).fit(x)
    log.info("GMM K=%d fitted in %.1f s, %d iterations, average log-likelihood %.4f",
             components, time.perf_counter() - t, gmm.n_iter_, gmm.lower_bound_)
    return save_gmm(out, gmm, {
        "backbone": head["backbone"], "weights": head["weights"], "input_size": head["input_size"],
        "layer": pattrs["layer"], "view": pattrs["view"], "local": pattrs["local"],
        "dim": pattrs["dim"], "pca": str(Path(pca_path).resolve()),
        "pca_sha256": file_digest(pca_path), "components": components, "per_image": per_image,
        "n_samples": x.shape[0], "max_iter": max_iter, "tol": tol, "n_init": n_init,
        "var_floor": var_floor, "seed": seed, "shards": [str(p) for p in paths],
        "featx_version": featx.__version__, "command": command,
    })
