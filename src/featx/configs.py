"""Every stage's settings, and the names of featx's registries, without torch.

A stage's config is a frozen dataclass whose fields are the stage's settings with their
defaults and constraints (:mod:`featx.params`); it checks itself when made, before any file is
read. They live here, apart from the stages that run them, so that the command line can build
its options -- and answer ``--help``, ``--version``, ``featx layers`` and shell completion --
without importing torch (seconds, and most of a gigabyte): the checks that need the registries
import them when a config is made. Each stage module re-exports its config.

The registries' names (curated backbones, encode methods, datasets, model families) are
stated here for the same reason. They cannot drift apart from the registries: the backbone
registry takes the curated descriptions from here, :mod:`featx.datasets` refuses to load when
its names differ, and ``tests/test_architecture.py`` checks all four against their registries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from featx.errors import InputError
from featx.params import (SEED, Costs, File, Flag, Instance, Integers, Interval, Names, Options,
                          Text, param, validate)

log = logging.getLogger(__name__)

# --- the registries' names ---------------------------------------------------------------

# curated backbones, in the order `featx layers` lists them: (input size, description)
BACKBONES: dict[str, tuple[int, str]] = {
    "alexnet": (227, "torchvision AlexNet (one-weird-trick variant; conv4 has 256 channels)"),
    "alexnet_caffe": (227, "Caffe AlexNet as in the papers (conv4 has 384 channels); "
                           "--weights PATH only"),
    "vgg16": (224, "torchvision VGG-16"),
    "resnet50": (224, "torchvision ResNet-50 (stage outputs)"),
    "efficientnet_lite0": (224, "EfficientNet-Lite0 (timm); ImageNet weights ship with pip "
                                "(works offline)"),
}
FAMILIES = ("torchvision", "timm")  # torchvision:NAME / timm:NAME
METHODS = ("cross-layer", "cross-layer-guided", "max", "sum-sqrt", "spp", "crops", "centre",
           "jitter", "global", "fisher", "vlad", "mpp", "nfk", "csf", "mpp-sp")
DATASETS = ("voc07", "mit67", "cub200", "flowers102", "h3d", "folder")

# --- extract ------------------------------------------------------------------------------

EXTRACT_DTYPES = ("float16", "float32")
# CNN inputs in one forward pass at most: a larger --batch-size is clamped, so memory stays
# bounded by a few batches of decoded views and their activations
MAX_BATCH = 1024

# --- encode -------------------------------------------------------------------------------

# sign: sign(P) read back at unit L2 norm ({-1, 0, 1} / sqrt(nonzeros), featx's choice, so an
# SVM's C means what it means for the other encodings); sign-raw: sign(P) as Liu et al. §4.3.3
# define it, read back as {-1, 0, 1}. Both store the same 2-bit codes.
QUANTIZE = ("none", "sign", "sign-raw")
DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class EncodeConfig:
    """Settings of one encoding, validated when made (before any file is read).

    ``layers``: (local t, guide t+1), default the PCA's layer and the backbone's guidance
    layer for it; ``fc_layer`` (global, jitter): default fc7, else pool. ``guidance`` (a
    guidance.h5 of fit-guidance) makes ``cross-layer`` scheme 2: ``cross-layer-guided``.
    """

    methods: Sequence[str] = param(("cross-layer",), Names(), flag="--method")
    views: Sequence[str] = param(("whole",), Names())
    pca: str | None = param(None, File(), optional=True)
    gmm: str | None = param(None, File(), optional=True)
    guidance: str | None = param(None, File(), optional=True)
    layers: Sequence[str] | None = param(None, Names(), optional=True)
    fc_layer: str | None = param(None, Text(), optional=True)
    power_norm: bool | None = param(None, Flag(), optional=True)  # None: each method's own
    l2: bool = param(True, Flag())
    quantize: str = param("none", Options(QUANTIZE))
    dtype: str = param("float32", Options(DTYPES))
    device: str = param("auto", Text())
    overwrite: bool = param(False, Flag())
    command: str = ""

    @property
    def method_names(self) -> tuple[str, ...]:
        """The methods run: with ``guidance``, cross-layer pooling is scheme 2."""
        swap = {"cross-layer": "cross-layer-guided"} if self.guidance else {}
        return tuple(swap.get(n, n) for n in self.methods)

    def __post_init__(self) -> None:
        from featx.io import MODEL_KINDS
        from featx.methods import GRID_VIEWS, get_methods

        validate(self)  # types first: a str of methods is not iterated as letters
        methods = get_methods(self.method_names)
        if any(m.view is None for m in methods):
            bad = [v for v in self.views if v not in GRID_VIEWS] or ([] if self.views else [""])
            if bad:
                raise InputError(f"unknown view {bad[0]!r}; valid: {', '.join(GRID_VIEWS)}")
        needs = set().union(*(m.needs for m in methods))
        for kind in MODEL_KINDS.values():  # every model a method needs, passed
            if kind.name in needs and not getattr(self, kind.name):
                users = ", ".join(m.name for m in methods if kind.name in m.needs)
                raise InputError(kind.needed_by(users))
        if self.fc_layer and not any("fc" in m.reads for m in methods):
            raise InputError("--fc-layer applies to the fc methods (global, jitter, centre, "
                             "crops); none of them is run")
        if self.guidance and "guidance" not in needs:
            raise InputError("--guidance applies to --method cross-layer (scheme 2)")
        if self.layers is not None and len(self.layers) != 2:
            raise InputError("--layers takes two layers: LOCAL,GUIDE (t and t+1)")


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction; ``batch_size`` counts CNN inputs (views), not images; a
    pyramid counts as the inputs of the backbone's size its pixels make up.

    ``layers`` None reads the backbone's default (its cross-layer pair); ``project`` is a PCA
    applied to the pyramid's dense vectors before they are stored; ``sample`` extracts a
    stratified, seeded (``seed``) sample of that many images (:meth:`ImageSource.sample`).
    ``encode``: the fused pass -- each shard's activations are encoded in memory as
    ``featx encode`` with these settings would encode them, and encoding shards are written
    instead of activation shards (the same numbers as the two steps; disk: encodings only).
    """

    backbone: str = param("alexnet", Text())
    layers: Sequence[str] | None = param(None, Names(), optional=True)
    views: Sequence[str] = param(("whole",), Names())
    weights: str = param("imagenet", Text())
    input_size: int | None = param(None, Interval(int, 32), optional=True)
    batch_size: int = param(64, Interval(int, 1))
    device: str = param("auto", Text())
    workers: int | None = param(None, Interval(int, 0), optional=True)
    shard_size: int = param(1000, Interval(int, 1))
    dtype: str = param("float16", Options(EXTRACT_DTYPES))
    seed: int = param(0, SEED)
    skip_bad: bool = param(False, Flag())
    overwrite: bool = param(False, Flag())
    command: str = ""
    project: str | None = param(None, File(), optional=True)
    sample: int | None = param(None, Interval(int, 1), optional=True)
    encode: EncodeConfig | None = param(None, Instance(EncodeConfig), optional=True)

    def __post_init__(self) -> None:
        validate(self)
        if self.batch_size > MAX_BATCH:
            log.warning("--batch-size %d is above the %d CNN inputs a forward pass takes at "
                        "most (to bound memory); using %d", self.batch_size, MAX_BATCH, MAX_BATCH)


@dataclass(frozen=True)
class JoinConfig:
    dtype: str = param("float32", Options(DTYPES))
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        validate(self)


# --- fit ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitPCAConfig:
    """``layer`` None: the backbone's cross-layer local layer (conv4, stage6, ...), as extract
    and encode default to the pair; ``local`` None takes the backbone's default for the layer
    (:meth:`featx.backbones.Backbone.default_local`); ``dim`` None the backbone's
    ``pca_dim`` (500, Liu et al.'s; efficientnet_lite0 128, as measured)."""

    layer: str | None = param(None, Text(), optional=True)
    view: str = param("whole", Text())
    local: str | None = param(None, Text(), optional=True)
    dim: int | None = param(None, Interval(int, 1), optional=True)  # None: the backbone's
    per_image: int = param(100, Interval(int, 1))
    whiten: bool = param(False, Flag())
    seed: int = param(0, SEED)
    device: str = param("auto", Text())
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        validate(self)
        if self.local is not None:
            from featx.encoders import LocalSpec

            LocalSpec.parse(self.local)


@dataclass(frozen=True)
class FitGMMConfig:
    pca: str = param("", File())
    components: int = param(256, Interval(int, 1))
    per_image: int = param(100, Interval(int, 1))
    max_iter: int = param(100, Interval(int, 1))
    tol: float = param(1e-3, Interval(float, 0))
    n_init: int = param(1, Interval(int, 1))
    var_floor: float = param(1e-4, Interval(float, 0, closed="right"))
    seed: int = param(0, SEED)
    device: str = param("auto", Text())
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        if not self.pca:
            raise InputError("fit-gmm needs --pca (a PCA from featx fit-pca)")
        validate(self)


@dataclass(frozen=True)
class FitGuidanceConfig:
    """``layer`` None: the shards' one pyramid layer; ``scales`` None: every pyramid scale;
    ``pca`` projects shards stored unprojected (a pyramid PCA from fit-pca)."""

    pca: str | None = param(None, File(), optional=True)
    layer: str | None = param(None, Text(), optional=True)
    scales: Sequence[int] | None = param(None, Integers(0), optional=True)
    channels: int = param(64, Interval(int, 1))
    kernel: int = param(1, Interval(int, 1))
    epochs: int = param(30, Interval(int, 0))
    batch_size: int = param(32, Interval(int, 1))
    lr: float = param(1e-2, Interval(float, 0, closed="right"))
    weight_decay: float = param(1e-4, Interval(float, 0))
    holdout: float = param(0.2, Interval(float, 0, 1, closed="left"))
    patience: int = param(5, Interval(int, 1))
    seed: int = param(0, SEED)
    device: str = param("auto", Text())
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        validate(self)
        if self.kernel % 2 == 0:
            raise InputError(f"--kernel must be odd (1, 3, ...), got {self.kernel}")
        if self.scales is not None and (not self.scales or min(self.scales) < 0):
            raise InputError("--scales takes pyramid scale indices 0, 1, ...")
        if self.scales is not None and len(set(self.scales)) != len(self.scales):
            raise InputError(f"--scales must be distinct, got {','.join(map(str, self.scales))}")


# --- classify -----------------------------------------------------------------------------

AUTO_C = (0.01, 0.1, 1.0, 10.0, 100.0)  # --C auto: the grid cross-validation chooses from
# ... for --loss logistic, whose C on L2-normalised encodings lies higher: on the real-photo
# development sets (benchmarks/real_photos.py over 0.001-10,000) its choices spread from
# 0.01 to 10,000, against 0.001-100 for the hinge (docs/classify.md)
AUTO_C_LOGISTIC = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
# dual: libsvm on the n x n Gram matrix (hinge loss; exact, fast for small n); primal:
# Newton on the squared hinge, streamed from the shards (memory independent of n, torchrun);
# auto: the dual where its Gram matrix and a class's copy of it fit in --memory
SOLVERS = ("auto", "dual", "primal")
CLASSIFIER_LOSSES = ("hinge", "logistic")  # hinge: the dual's hinge, the primal's squared hinge
MULTICLASS = ("ovr", "multinomial")


@dataclass(frozen=True)
class TrainSVMConfig:
    """``c``: one C, or several to choose from by ``folds``-fold cross-validation on the
    training split (``"auto"``: :data:`AUTO_C`, :data:`AUTO_C_LOGISTIC` for the logistic
    loss; :meth:`grid`). ``loss``: ``hinge`` (SVMs: the dual's
    hinge, the primal's squared hinge) or ``logistic`` (Newton's method; probabilities),
    ``multiclass`` ``ovr`` or ``multinomial`` (logistic, single-label); ``calibrate``: Platt
    scaling of a hinge model on its cross-validation folds' held-out scores;
    ``standardize``: each encoding dimension to zero mean, unit variance on the training
    split (folded into the stored weights)."""

    c: tuple[float, ...] | str = param((1.0,), Costs(), flag="--C")
    folds: int = param(5, Interval(int, 2))
    include_difficult: bool = param(False, Flag())
    seed: int = param(0, SEED)
    device: str = param("auto", Text())
    overwrite: bool = param(False, Flag())
    command: str = ""
    memory_gb: float = param(2.0, Interval(float, 0, closed="right"), flag="--memory")
    solver: str = param("auto", Options(SOLVERS))
    loss: str = param("hinge", Options(CLASSIFIER_LOSSES))
    multiclass: str = param("ovr", Options(MULTICLASS))
    calibrate: bool = param(False, Flag())
    standardize: bool = param(False, Flag())

    def __post_init__(self) -> None:
        validate(self)
        if self.multiclass == "multinomial" and self.loss != "logistic":
            raise InputError("--multiclass multinomial needs --loss logistic (an SVM is one "
                             "class against the rest)")
        if self.calibrate and self.loss == "logistic":
            raise InputError("--calibrate is for the hinge loss: a logistic model's "
                             "probabilities are its own")

    def grid(self) -> tuple[float, ...]:
        """The Cs to choose from (one: no choice): ``c``, or the loss's grid for "auto"."""
        if self.c == "auto":
            return AUTO_C_LOGISTIC if self.loss == "logistic" else AUTO_C
        return self.c


@dataclass(frozen=True)
class EvaluateConfig:
    """``dataset`` picks the benchmark's metric (voc07: 11-point AP); None: from the labels.
    ``plots``: a folder for the PR curves / confusion matrix (their paths are written too);
    ``scores``: a CSV of every image's scores (and probabilities, when the model has them)."""

    model: str = param("", File())
    dataset: str | None = param(None, Options(DATASETS), optional=True)
    memory_gb: float = param(2.0, Interval(float, 0, closed="right"), flag="--memory")
    plots: str | None = param(None, File(), optional=True)
    scores: str | None = param(None, File(), optional=True)
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        if not self.model:
            raise InputError("evaluate needs --model (an SVM from featx train-svm)")
        validate(self)


# --- maps ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MapsConfig:
    model: str | None = param(None, File(), optional=True)
    gmm: str | None = param(None, File(), optional=True)
    pca: str | None = param(None, File(), optional=True)
    guidance: str | None = param(None, File(), optional=True)
    layer: str | None = param(None, Text(), optional=True)
    channels: Sequence[int] | None = param(None, Integers(0), optional=True)
    classes: Sequence[str] | None = param(None, Names(), optional=True)
    top: int = param(3, Interval(int, 1))
    images: str | None = param(None, Text(), optional=True)
    limit: int | None = param(None, Interval(int, 1), optional=True)
    resolution: int = param(64, Interval(int, 4))
    # confidence maps: each pixel the mean of the scores of the windows covering it, or their
    # sum (Yoo et al. §4.5: "accumulate all the weights of local activations")
    reduce: str = param("mean", Options(("sum", "mean")))
    device: str = param("auto", Text())
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        validate(self)
        if self.model and not (self.gmm or self.pca or self.guidance):
            raise InputError("maps --model needs --gmm (confidence maps of a Fisher-family "
                             "SVM), --pca (cross-layer) or --guidance (scheme 2)")
        if not self.model and not (self.layer or self.guidance):
            raise InputError("maps needs --model (with --gmm, --pca or --guidance) or --layer "
                             "/ --guidance for channel overlays")
        if self.model and self.layer:
            raise InputError("--layer draws channel overlays; it does not go with --model")

    @property
    def kind(self) -> str:
        if self.model:
            return "confidence" if self.gmm else "contribution"
        return "channels"

    @property
    def painter(self) -> str:
        """The painter that draws this kind (featx.stages.maps.PAINTERS): scheme 2's
        guidance makes contributions of pyramid regions and overlays of its channels."""
        return self.kind + ("-guided" if self.guidance and self.kind != "confidence" else "")


# --- export, predict ----------------------------------------------------------------------

PREDICT_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class ExportConfig:
    """``model``: the SVM (train-svm) to export; ``encodings``: the folders of its training
    encodings (None: the ones the SVM records). ``pca``, ``gmm``, ``guidance``, ``project``:
    the model files the chain used, where they are no longer at the paths the encodings
    record; ``weights``: the state-dict file, when the backbone's weights came from one."""

    model: str = param("", File())
    encodings: Sequence[str] | None = param(None, Names(), optional=True)
    pca: str | None = param(None, File(), optional=True)
    gmm: str | None = param(None, File(), optional=True)
    guidance: str | None = param(None, File(), optional=True)
    project: str | None = param(None, File(), optional=True)
    weights: str | None = param(None, File(), optional=True)
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        if not self.model:
            raise InputError("export needs --model (an SVM from featx train-svm)")
        validate(self)


@dataclass(frozen=True)
class PredictConfig:
    """``bundle``: a classifier bundle (featx export); ``top_k`` labels a photo (a
    multi-label model: every label whose score is over 0, its decision threshold);
    ``format`` of the table; ``weights``: the state-dict file, when the bundle's backbone
    weights came from one (checked by digest). The rest as featx extract's."""

    bundle: str = param("", File())
    top_k: int = param(1, Interval(int, 1))
    format: str = param("csv", Options(PREDICT_FORMATS))
    weights: str | None = param(None, File(), optional=True)
    batch_size: int = param(64, Interval(int, 1))
    device: str = param("auto", Text())
    workers: int | None = param(None, Interval(int, 0), optional=True)
    shard_size: int = param(1000, Interval(int, 1))
    skip_bad: bool = param(False, Flag())
    overwrite: bool = param(False, Flag())
    command: str = ""

    def __post_init__(self) -> None:
        if not self.bundle:
            raise InputError("predict needs a classifier bundle (featx export)")
        validate(self)
