"""featx from Python: one eager function a stage, with the command line's defaults.

Each function runs its stage to completion through the stage driver (:mod:`featx.stages`) and
returns what it wrote: the shard paths (``extract``, ``encode``, ``join``, ``maps``), the model
file (``fit_pca``, ``fit_gmm``, ``fit_guidance``, ``train_svm``), or the metrics
(``evaluate``). :func:`load` reads any model file back. Settings are the keyword arguments of
the stage's config (the same names as the command-line options, with ``_`` for ``-``); an
error names them as you passed them (``per_image``, not ``--per-image``).

    import featx
    acts = featx.extract("photos/", "work/acts", backbone="efficientnet_lite0")
    pca = featx.fit_pca(acts, "work/pca.h5", layer="stage6", dim=128)

The driver makes the process set-up a run needs (glibc keeps freed host memory; SIGTERM stops
a run at a safe point, as Ctrl-C does) unless the application has installed its own SIGTERM
handler. See docs/api.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from featx.errors import FeatxError, InputError

Paths = str | Path | Iterable[str | Path]
_FLAGS = {"overwrite", "skip_bad", "whiten", "include_difficult", "crop_boxes"}
_RENAMED = {"json": "out", "memory": "memory_gb"}


def _parameter(match: re.Match) -> str:
    flag = match.group(1)
    if flag.startswith("no-"):
        return f"{flag[3:].replace('-', '_')}=False"
    name = _RENAMED.get(flag, flag.replace("-", "_"))
    said_of = match.string[match.end():].startswith(" must be")  # the value, not the switch
    return f"{name}=True" if name in _FLAGS and not said_of else name


@contextmanager
def _parameter_names():
    """Errors name the Python parameters, not the command-line options."""
    try:
        yield
    except FeatxError as exc:
        text = re.sub(r"(?<![\w-])--([A-Za-z][\w-]*)", _parameter, str(exc))
        text = re.sub(r"(?<![\w-])-o\b", "out", text).replace("INPUTS", "images")
        raise type(exc)(text) from None


# --- each function's own arguments, type-strict (its ``**settings`` are the stage config's,
# checked by featx.params when the config is made) --------------------------------------------

def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike)) and not isinstance(x, bytes) and str(x) != ""


def _is_paths(x: Any) -> bool:
    return _is_path(x) or (isinstance(x, (list, tuple)) and bool(x)
                           and all(_is_path(p) for p in x))


def _is_names(x: Any) -> bool:
    return (isinstance(x, str) and bool(x.strip())) or (
        isinstance(x, (list, tuple)) and bool(x) and all(isinstance(n, str) and n.strip()
                                                         for n in x))


class Rule(NamedTuple):
    """What an argument takes: ``ok(value)``, said as ``what``; ``good`` a value it takes and
    ``bad`` values it refuses (tests/reliability/test_parameters.py tries each)."""

    ok: Callable[[Any], bool]
    what: str
    good: Any
    bad: tuple


_IMAGES = Rule(lambda x: x is None or _is_paths(x),
               "a path (str or os.PathLike), a list of them, or None (with dataset=)", "p",
               (b"p", 3, [], [b"p"]))
_PATH = Rule(_is_path, "a path (str or os.PathLike)", "p", (b"p", 3, ""))
_PATHS = Rule(_is_paths, "a path (str or os.PathLike) or a list of them", "p",
              (b"p", 3, [], [b"p"]))
_NAMES = Rule(_is_names, "a name, a comma-separated str of them, or a list of them",
              "whole", (3, "", [3], ()))
_TEXT = Rule(lambda x: isinstance(x, str) and bool(x.strip()), "a name (str)", "x", (3, ""))
RULES: dict[str, Rule] = {
    "images": _IMAGES, "out": _PATH, "activations": _PATHS, "encodings": _PATHS,
    "parts": Rule(lambda x: isinstance(x, (list, tuple)) and all(_is_path(p) for p in x),
                  "a list of encoding folders", ["a", "b"], ("ab", b"ab", [3])),
    "model": _PATH, "path": _PATH, "pca": _PATH, "root": _PATH, "bundle": _PATH,
    "dataset": _TEXT, "split": Rule(lambda x: isinstance(x, str), "a split name (str)", "",
                                    (3, b"train")),
    "crop_boxes": Rule(lambda x: isinstance(x, bool), "True or False", False, ("no", 1)),
    "layers": _NAMES, "views": _NAMES, "method": _NAMES, "layer": _TEXT, "backbone": _TEXT,
    "device": _TEXT,
    "input_size": Rule(lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 32,
                       "an integer >= 32", 64, ("64", 16, 64.0)),
    "progress": Rule(callable, "a function (description, total) -> advance",
                     lambda d, t: (lambda n=1, note=None: None), ("bars", 3)),
    "verbose": Rule(lambda x: isinstance(x, bool), "True or False", True, ("no", 1)),
    "C": Rule(lambda x: True, "checked by _c_grid", 1.0, ("55", "1,10", None, True, [])),
}


def _checked(fn: Callable) -> Callable:
    """``fn`` with each of its own arguments checked against :data:`RULES` before any work
    (None where its default is None); an error names the Python parameter."""
    import functools
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise InputError(f"featx.{fn.__name__}: {exc}") from None
        for name, value in bound.arguments.items():
            p = sig.parameters[name]
            if p.kind is p.VAR_KEYWORD:
                continue
            if value is None and p.default is None:
                continue
            rule = RULES[name]
            if not rule.ok(value):
                raise InputError(f"{name} must be {rule.what}, got {value!r}")
        return fn(*args, **kwargs)

    return call


def _list(inputs: Paths) -> list[str]:
    return [str(inputs)] if isinstance(inputs, (str, Path)) else [str(p) for p in inputs]


def _split(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None or not isinstance(value, str):
        return None if value is None else tuple(value)
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _command(name: str, *args: Any, **kwargs: Any) -> str:
    """The call as provenance records it."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()
                                       if v is not None]
    return f"featx.{name}({', '.join(shown)})"


def _strings(settings: dict) -> dict:
    """Settings as the configs take them: a model file given as a Path, as its string."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}


def _run(module: str, config: str, name: str, inputs: Any, out: Any, settings: dict,
         progress: Callable | None, shown_inputs: Any, verbose: bool = True) -> list[Path]:
    import importlib

    stage = importlib.import_module(f"featx.stages.{module}")
    settings = _strings(settings)
    with _parameter_names():
        cfg = getattr(stage, config)(**settings, command=_command(name, shown_inputs, out,
                                                                   **settings))
        with _reported(progress, verbose, name) as progress:
            return stage.run(inputs, out, cfg, progress=progress)


@contextmanager
def _reported(progress: Callable | None, verbose: bool, name: str):
    """The progress a call reports to: the caller's, else (``verbose``) the command line's
    on stderr -- bars on a terminal, a plain line every ``FEATX_PROGRESS_EVERY`` seconds
    elsewhere -- counting what the stage counts; ``verbose=False``: none."""
    if progress is not None or not verbose:
        yield progress
        return
    from featx.cli.progress import Bars
    from featx.stages import stages

    with Bars(stages()[name.replace("_", "-")].unit) as bars:
        yield bars


def _one(*args: Any, **kwargs: Any) -> Path | None:
    """The one file a fitting stage writes (None on a torchrun rank other than 0, which
    writes nothing)."""
    paths = _run(*args, **kwargs)
    return paths[0] if paths else None


@_checked
def image_source(images: Paths | None = None, *, dataset: str | None = None,
                 root: str | Path | None = None, split: str = "", crop_boxes: bool = False):
    """The images ``extract`` reads: folders, files and lists of paths, or a benchmark in its
    standard layout (``dataset``, ``root``, ``split``), as a :class:`featx.images.ImageSource`
    (ids, labels, classes)."""
    from featx.stages.extract import image_source as source

    with _parameter_names():
        return source(None if images is None else _list(images), dataset=dataset,
                      root=None if root is None else str(root), split=split,
                      crop_boxes=crop_boxes)


@_checked
def layers(backbone: str, input_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every layer alias of ``backbone`` with its output shape (C, H, W) at ``input_size``
    (default: the backbone's), without loading weights."""
    from featx.backbones import get_backbone, layer_shapes

    with _parameter_names():
        bb = get_backbone(backbone)
        return dict(layer_shapes(bb, input_size or bb.input_size))


@_checked
def extract(images: Paths | None, out: str | Path, *, dataset: str | None = None,
            root: str | Path | None = None, split: str = "", crop_boxes: bool = False,
            layers: str | Sequence[str] | None = None, views: str | Sequence[str] = "whole",
            progress: Callable | None = None, verbose: bool = True, **settings: Any) -> list[Path]:
    """Activations of a backbone over ``images`` (folders, files, lists of paths) or a
    benchmark (``dataset``, ``root``, ``split``) into shards under ``out``.
    ``settings``: :class:`featx.stages.extract.ExtractConfig` (backbone, weights, input_size,
    batch_size, device, workers, shard_size, dtype, seed, skip_bad, overwrite, project,
    sample); ``encode``: the fused pass, encoding shards instead of activations, as
    ``extract --encode``: the method(s), with ``encode_views``, ``pca``, ``gmm``,
    ``guidance`` beside it -- or a dict of :func:`encode`'s settings (method, views, pca,
    ...)."""
    source = image_source(images, dataset=dataset, root=root, split=split,
                          crop_boxes=crop_boxes)
    settings = {"layers": _split(layers), "views": _split(views), **settings}
    with _parameter_names():
        settings["encode"] = _fused(settings)
    return _run("extract", "ExtractConfig", "extract", source, out, settings, progress,
                images if images is not None else {"dataset": dataset, "root": str(root),
                                                    "split": split}, verbose=verbose)


def _fused(settings: dict) -> Any:
    """``extract``'s ``encode`` as the config takes it (None, or an EncodeConfig), the fused
    pass's own settings taken out of ``settings`` as the command line takes them."""
    from featx.encoding import EncodeConfig

    own = {k: settings.pop(k) for k in ("encode_views", "pca", "gmm", "guidance")
           if k in settings}
    encode = settings.get("encode")
    if encode is None or isinstance(encode, EncodeConfig):
        if any(v is not None for v in own.values()):
            raise InputError("encode_views, pca, gmm and guidance go with encode= (the fused "
                             f"pass); got {', '.join(k for k, v in own.items() if v is not None)}"
                             " without it")
        return encode
    if isinstance(encode, dict):
        enc = dict(encode)
        if "method" in enc:
            enc["methods"] = _split(enc.pop("method"))
        for k in ("views", "layers"):
            if isinstance(enc.get(k), str):
                enc[k] = _split(enc[k])
        enc.update({k: v for k, v in own.items() if k != "encode_views"})
        if own.get("encode_views") is not None:
            enc["views"] = _split(own["encode_views"])
        return EncodeConfig(**_strings(enc))
    if not _is_names(encode):
        raise InputError(f"encode must be method name(s) or a dict of encode's settings, "
                         f"got {encode!r}")
    views = _split(own.get("encode_views")) or tuple(
        v for v in (settings.get("views") or ()) if not v.startswith("pyramid")) or ("whole",)
    return EncodeConfig(methods=_split(encode), views=views,
                        **_strings({k: own.get(k) for k in ("pca", "gmm", "guidance")}),
                        device=settings.get("device", "auto"))


@_checked
def fit_pca(activations: Paths, out: str | Path, *, layer: str | None = None,
            progress: Callable | None = None,
            verbose: bool = True, **settings: Any) -> Path | None:
    """A PCA of ``layer``'s local features sampled from activation shards, saved to ``out``.
    ``settings``: view, local, dim (500), per_image (100), whiten, seed, device, overwrite."""
    path = _one("fit_pca", "FitPCAConfig", "fit_pca", _list(activations), out,
                  {"layer": layer, **settings}, progress, _list(activations), verbose=verbose)
    return path


@_checked
def fit_gmm(activations: Paths, out: str | Path, *, pca: str | Path,
            progress: Callable | None = None,
            verbose: bool = True, **settings: Any) -> Path | None:
    """A diagonal GMM of PCA-reduced local features (the Fisher vector's vocabulary).
    ``settings``: components (256), per_image, max_iter, tol, n_init, var_floor, seed, device,
    overwrite."""
    path = _one("fit_gmm", "FitGMMConfig", "fit_gmm", _list(activations), out,
                  {"pca": pca, **settings}, progress, _list(activations), verbose=verbose)
    return path


@_checked
def fit_guidance(activations: Paths, out: str | Path, *, progress: Callable | None = None,
                 verbose: bool = True, **settings: Any) -> Path | None:
    """Scheme 2's trained guidance layer (Liu et al. 2016) on labelled pyramid activations.
    ``settings``: pca, layer, scales, channels (64), kernel, epochs (30), batch_size, lr,
    weight_decay, holdout, patience, seed, device, overwrite."""
    path = _one("fit_guidance", "FitGuidanceConfig", "fit_guidance", _list(activations), out,
                  settings, progress, _list(activations), verbose=verbose)
    return path


@_checked
def encode(activations: Paths, out: str | Path, *, method: str | Sequence[str] = "cross-layer",
           views: str | Sequence[str] = "whole", progress: Callable | None = None,
           verbose: bool = True, **settings: Any) -> list[Path]:
    """Encodings of activation shards (one output shard an input shard) under ``out``.
    ``method``: one or several of :data:`featx.methods.METHODS`, joined. ``settings``: pca,
    gmm, guidance (model files), layers, fc_layer, power_norm, l2, quantize, dtype, device,
    overwrite."""
    settings = {"methods": _split(method), "views": _split(views), **settings}
    if "layers" in settings:
        settings["layers"] = _split(settings["layers"])
    return _run("encode", "EncodeConfig", "encode", _list(activations), out, settings, progress,
                _list(activations), verbose=verbose)


@_checked
def join(parts: Sequence[str | Path], out: str | Path, *, progress: Callable | None = None,
         verbose: bool = True, **settings: Any) -> list[Path]:
    """Encoding folders of the same images joined, each part at unit norm (CL + CNN-Global).
    ``settings``: dtype, overwrite."""
    return _run("join", "JoinConfig", "join", [str(p) for p in parts], out, settings, progress,
                [str(p) for p in parts], verbose=verbose)


@_checked
def train_svm(encodings: Paths, out: str | Path, *, C: float | Sequence[float] | str = 1.0,
              progress: Callable | None = None,
              verbose: bool = True, **settings: Any) -> Path | None:
    """Linear classifiers on encoding shards, saved to ``out``: one-vs-rest SVMs, or logistic
    regression. ``C``: one value, several to choose from by cross-validation, or ``"auto"``.
    ``settings``: folds, include_difficult, solver (auto, dual, primal), loss (hinge,
    logistic), multiclass (ovr, multinomial), calibrate, standardize, memory_gb, seed,
    device, overwrite."""
    c = _c_grid(C)
    path = _one("train_svm", "TrainSVMConfig", "train_svm", _list(encodings), out,
                  {"c": c, **settings}, progress, _list(encodings), verbose=verbose)
    return path


def _c_grid(C: Any) -> tuple[float, ...] | str:
    """``train_svm``'s ``C`` as the config takes it, type-strict: ``"auto"``, a real number
    (not a bool, not a string: ``"55"`` is not 55), or a list or tuple of them."""
    import numbers

    from featx.errors import InputError

    def real(x: Any) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool)

    if isinstance(C, str) and C == "auto":
        return "auto"
    if real(C):
        return (float(C),)
    if isinstance(C, (list, tuple)) and C and all(real(x) for x in C):
        return tuple(float(x) for x in C)
    raise InputError(f"C must be a number > 0, a list of them, or 'auto'; got {C!r}")


@_checked
def evaluate(encodings: Paths, model: str | Path, out: str | Path | None = None, *,
             progress: Callable | None = None,
             verbose: bool = True, **settings: Any) -> dict[str, Any]:
    """The metrics of encoding shards under an SVM model (VOC07 11-point AP for multi-label
    data, accuracies for single-label), also written to ``out`` as JSON when given.
    ``settings``: dataset, memory_gb, plots (a folder), scores (a CSV of every image's
    scores), overwrite."""
    from featx.stages.evaluate import Evaluate, EvaluateConfig

    with _parameter_names():
        settings = _strings(settings)
        cfg = EvaluateConfig(model=str(model), **settings,
                             command=_command("evaluate", _list(encodings), out,
                                              model=str(model), **settings))
        stage = Evaluate(cfg)
        with _reported(progress, verbose, "evaluate") as progress:
            stage.run(_list(encodings), out, progress=progress)
    return stage.result


@_checked
def maps(activations: Paths, out: str | Path, *, progress: Callable | None = None,
         verbose: bool = True, **settings: Any) -> list[Path]:
    """Confidence, contribution or channel maps of activation shards' images under ``out``.
    ``settings``: model, gmm, pca, guidance, layer, channels, classes, top, images, limit,
    resolution, reduce, device, overwrite."""
    return _run("maps", "MapsConfig", "maps", _list(activations), out, settings, progress,
                _list(activations), verbose=verbose)


@_checked
def load_encodings(encodings: Paths) -> tuple[list[str], Any, Any, dict[str, Any]]:
    """Encoding shards (or their folders) read into memory: ids, X (N, dim) float32, labels
    (N,) or (N, classes), and the attributes (provenance) the shards agree on; for
    scikit-learn."""
    from featx.io import load_encodings as load, shard_paths
    from featx.io.provenance import ENCODING_KEYS

    with _parameter_names():
        return load(shard_paths(_list(encodings)), ENCODING_KEYS)


@_checked
def load(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """A model file of any kind (PCA, GMM, guidance, SVM), as the object featx uses and its
    attributes (provenance): :data:`featx.io.MODEL_KINDS` knows how to read each."""
    from featx.device import resolve_device
    from featx.io import load_model

    with _parameter_names():
        return load_model(path, resolve_device(device))


@_checked
def export(model: str | Path, out: str | Path, *, encodings: Paths | None = None,
           progress: Callable | None = None, verbose: bool = True,
           **settings: Any) -> Path | None:
    """One classifier bundle (``out``) of the SVM ``model`` and the chain that made its
    training encodings (``encodings``: their folder, default the one the SVM records).
    ``settings``: pca, gmm, guidance, project, weights (where the files are no longer at the
    paths the chain recorded; each is checked by digest), overwrite. Run it with
    :func:`predict` or :class:`Classifier`."""
    from featx.stages import export as stage

    settings = _strings({"model": model, "encodings": None if encodings is None else
                         tuple(_list(encodings)), **settings})
    with _parameter_names():
        cfg = stage.ExportConfig(**settings, command=_command("export", out, **settings))
        with _reported(progress, verbose, "export") as progress:
            paths = stage.run(out, cfg, progress=progress)
    return paths[0] if paths else None


@_checked
def predict(bundle: str | Path, images: Paths | None, out: str | Path, *,
            dataset: str | None = None, root: str | Path | None = None, split: str = "",
            progress: Callable | None = None, verbose: bool = True,
            **settings: Any) -> Path | None:
    """The labels of ``images`` (or a benchmark: ``dataset``, ``root``, ``split``) under the
    classifier ``bundle`` (:func:`export`): predictions shards and the table
    ``out/predictions.csv`` (or ``.jsonl``), whose path it returns. ``settings``: top_k,
    format, weights, batch_size, device, workers, shard_size, skip_bad, overwrite."""
    source = image_source(images, dataset=dataset, root=root, split=split)
    return _one("predict", "PredictConfig", "predict", source, out,
                {"bundle": bundle, **settings}, progress,
                images if images is not None else {"dataset": dataset, "root": str(root),
                                                    "split": split}, verbose=verbose)


class Classifier:
    """A classifier bundle (featx export) as an estimator on images, scikit-learn's way:

        clf = featx.Classifier.load("flowers.featx.h5")
        clf.predict(["a.jpg", "b.jpg"])          # array(['roses', 'tulips'])
        clf.decision_function("photos/")        # (N, classes) scores
        clf.predict_proba(images)               # when the model has probabilities

    ``images``: a path (an image or a folder), a list of paths, PIL images, or uint8 RGB
    arrays (one (H, W, 3) or a batch (N, H, W, 3)); arrays and PIL images are written as
    lossless PNGs for the run. Each call is one :func:`predict` pass (the model loads once a
    call). ``settings``: device, batch_size, workers, weights (predict's)."""

    def __init__(self, path: str | Path, *, verbose: bool = False, **settings: Any):
        from featx.io import read_bundle

        if not _is_path(path):
            raise InputError(f"path must be a path (str or os.PathLike), got {path!r}")
        if not isinstance(verbose, bool):
            raise InputError(f"verbose must be True or False, got {verbose!r}")
        from featx.configs import PredictConfig

        with _parameter_names():
            PredictConfig(bundle=str(path), **_strings(settings))  # checked now, not at use
            self.bundle = read_bundle(path)
        self.path, self.verbose, self.settings = Path(path), verbose, settings
        import numpy as np

        self.classes_ = np.asarray(self.bundle.classes)
        self.multilabel = bool(self.bundle.recipe["multilabel"])
        self.probability = self.bundle.recipe["probability"] or ""
        import tempfile

        from featx.io import load_svm_extras

        with tempfile.TemporaryDirectory(prefix="featx-classifier-") as tmp:
            self._platt = load_svm_extras(self.bundle.unpack(tmp)["svm"]).get("platt")

    @classmethod
    def load(cls, path: str | Path, **settings: Any) -> Classifier:
        return cls(path, **settings)

    def __repr__(self) -> str:
        r = self.bundle.recipe
        return (f"featx.Classifier({str(self.path)!r}: {'+'.join(r['encode']['methods'])} on "
                f"{r['backbone']}, {len(self.classes_)} classes)")

    def decision_function(self, images: Any) -> Any:
        """(N, classes) float32 scores of ``images``, in their order."""
        import tempfile

        import numpy as np

        from featx.io import PredictionShard

        with tempfile.TemporaryDirectory(prefix="featx-classifier-") as tmp:
            paths = _image_paths(images, Path(tmp) / "images")
            table = predict(self.path, paths, Path(tmp) / "out", verbose=self.verbose,
                            **self.settings)
            scores = {}
            for shard in sorted(Path(table).parent.glob("shard-*.h5")):
                with PredictionShard(shard) as sh:
                    scores.update(zip(sh.paths, sh.scores()))
            return np.stack([scores[os.path.abspath(p)] for p in paths]) if paths else \
                np.zeros((0, len(self.classes_)), np.float32)

    def predict(self, images: Any) -> Any:
        """The label of each image (``classes_``); a multi-label model: an (N, classes)
        indicator of the labels scored over 0."""
        s = self.decision_function(images)
        return s > 0 if self.multilabel else self.classes_[s.argmax(1)]

    def predict_proba(self, images: Any) -> Any:
        """(N, classes) probabilities, for a model trained with them (train-svm --loss
        logistic, or --calibrate)."""
        from featx import svm

        if not self.probability:
            raise InputError(f"{self.path} has no probabilities: train it with --loss "
                             "logistic or --calibrate")
        return svm.probabilities(self.decision_function(images), self.probability,
                                 self.multilabel, self._platt)


def _image_paths(images: Any, folder: Path) -> list[str]:
    """``images`` as a list of image files: paths as they are (a folder: its images, sorted
    as featx reads them), PIL images and uint8 arrays written as PNGs into ``folder``."""
    import numpy as np

    if _is_path(images):
        from featx.images import open_source

        return [r.path for r in open_source([str(images)]).records]
    items = list(images) if isinstance(images, (list, tuple)) else \
        list(images) if isinstance(images, np.ndarray) and images.ndim == 4 else [images]
    out = []
    for n, item in enumerate(items):
        if _is_path(item):
            out.append(str(item))
            continue
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                raise InputError(f"images[{n}]: an array must be uint8 (H, W, 3) RGB, got "
                                 f"{item.dtype} {item.shape}")
            from PIL import Image

            item = Image.fromarray(item)
        if not hasattr(item, "save") or not hasattr(item, "mode"):
            raise InputError(f"images must be paths, PIL images or uint8 arrays; images[{n}] "
                             f"is {type(item).__name__}")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{n:06d}.png"
        item.convert("RGB").save(target)
        out.append(str(target))
    if not out:
        raise InputError("images is empty")
    return out


__all__ = ["Classifier", "encode", "evaluate", "export", "extract", "fit_gmm", "fit_guidance",
           "fit_pca", "image_source", "join", "layers", "load", "load_encodings", "maps",
           "predict", "train_svm"]
