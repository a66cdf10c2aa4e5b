"""Estimators fitted on local features: :class:`PCA` and the diagonal :class:`GaussianMixture`.

Both are scikit-learn estimators (``BaseEstimator``; ``check_estimator`` passes) computed in
torch, on the GPU when given ``device=``. They take numpy arrays (validated as scikit-learn
does, results returned as numpy) or torch tensors (kept on their device, results as tensors).
"""

from featx.encoders.gaussian import augment, density_params, log_densities, posteriors
from featx.fit.gmm import GaussianMixture
from featx.fit.guidance import Guidance, fit_guidance, init_guidance
from featx.fit.kmeans import kmeans, kmeans_pp
from featx.fit.pca import PCA

__all__ = ["PCA", "GaussianMixture", "Guidance", "augment", "density_params", "fit_guidance",
           "init_guidance", "kmeans", "kmeans_pp", "log_densities", "posteriors"]
