"""The maths of image encodings: pure functions on torch tensors, any device, batched.

- :mod:`~featx.encoders.local`: local features of a layer (subarrays, dense vectors);
- :mod:`~featx.encoders.cross_layer`: cross-convolutional-layer pooling and its geometry;
- :mod:`~featx.encoders.pooling`: normalisation and the direct pooling baselines;
- :mod:`~featx.encoders.fisher`: improved Fisher vectors, VLAD, and the multi-scale
  poolings MPP / NFK / CSF;
- :mod:`~featx.encoders.gaussian`: diagonal-Gaussian log-densities and posteriors as one GEMM
  (shared with the GMM's EM in :mod:`featx.fit`, which imports them from here).

Which of them an ``featx encode --method`` runs is said in :mod:`featx.methods`.
"""

from featx.encoders.cross_layer import CrossLayerGrid, cross_layer_pool, guide_at
from featx.encoders.cross_layer import contributions, guidance_maps, guided_pool
from featx.encoders.cross_layer import score_contributions
from featx.encoders.cross_layer import project_subarrays, vectors_as_map
from featx.encoders.fisher import POSTERIOR_FLOOR, csf, fisher_vector, gmm_params, mpp, mpp_sp
from featx.encoders.fisher import nfk, vlad
from featx.encoders.local import LocalSpec
from featx.encoders.pooling import concat_normalized, max_pool, normalize, spp, sum_pool

__all__ = [
    "POSTERIOR_FLOOR", "CrossLayerGrid", "LocalSpec", "concat_normalized", "contributions",
    "score_contributions",
    "cross_layer_pool", "csf", "fisher_vector", "gmm_params", "guidance_maps", "guide_at", "guided_pool",
    "max_pool", "mpp", "mpp_sp", "nfk", "normalize", "project_subarrays", "spp", "sum_pool",
    "vectors_as_map", "vlad",
]
