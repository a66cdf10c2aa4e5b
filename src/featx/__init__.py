"""featx: image representations from pretrained CNN activations.

Cross-convolutional-layer pooling (Liu et al., CVPR 2015) and multi-scale pyramid pooling of
Fisher vectors over dense CNN activations (Yoo et al., arXiv 1412.1628), as a chain of
command-line stages over HDF5 shards, and from Python: ``featx.extract``, ``featx.fit_pca``,
``featx.fit_gmm``, ``featx.fit_guidance``, ``featx.encode``, ``featx.join``,
``featx.train_svm``, ``featx.evaluate``, ``featx.export``, ``featx.predict``,
``featx.Classifier``, ``featx.ImageFeatures`` (a scikit-learn transformer on image paths),
``featx.maps``, ``featx.load`` (:mod:`featx.api`,
docs/api.md) and ``featx.reproduce`` (the papers' tables). See ``docs/`` for the stages and
the file format.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("featx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from featx.errors import FeatxError  # noqa: E402

_API = ("Classifier", "encode", "evaluate", "export", "extract", "fit_gmm", "fit_guidance",
        "fit_pca", "image_source", "join", "layers", "load", "load_encodings", "maps", "predict",
        "train_svm")


def __getattr__(name: str):
    """The API functions, imported on first use (``import featx`` stays light)."""
    if name in _API:
        from featx import api

        return getattr(api, name)
    if name == "ImageFeatures":  # scikit-learn's transformer on image paths
        from featx.transformer import ImageFeatures

        return ImageFeatures
    if name == "reproduce":  # the package: featx.reproduce.reproduce(data, work, reports)
        import importlib

        return importlib.import_module("featx.reproduce")
    raise AttributeError(f"module 'featx' has no attribute {name!r}")


__all__ = ["FeatxError", "ImageFeatures", "__version__", *_API]
