"""featx: image representations from pretrained CNN activations.

Cross-convolutional-layer pooling (Liu et al., CVPR 2015) and multi-scale pyramid pooling of
Fisher vectors over dense CNN activations (Yoo et al., arXiv 1412.1628), as a chain of
command-line stages over HDF5 shards. See ``docs/`` for the stages and the file format.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("featx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from featx.errors import FeatxError  # noqa: E402

__all__ = ["FeatxError", "__version__"]
