"""The maps stage: pictures of where a representation's evidence lies (:mod:`featx.windows` for
the maths, :mod:`featx.plots` for the drawing). Three kinds, by the options given:

- ``model`` + ``gmm``: object confidence maps of the Fisher family (Yoo et al. §4.5) from
  pyramid activations;
- ``model`` + ``pca`` (scheme 1, whole view) or ``model`` + ``guidance`` (scheme 2):
  cross-layer contribution maps;
- ``layer`` (a grid layer of the whole view) or ``guidance`` alone: channel overlays
  (Liu et al. Fig. 4).

Per image one PNG (the photo and one panel per class or channel) and, for programs, every raw
map in ``maps.h5`` (map_NNNNN datasets; attributes ``ids``, ``panels``, ``kind``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from featx import interrupt, plots
from featx.backbones import get_backbone
from featx.digest import file_digest
from featx.encoders import CrossLayerGrid, LocalSpec, guidance_maps, guide_at, score_contributions
from featx.encoders import gmm_params, project_subarrays, vectors_as_map
from featx.errors import InputError, ProvenanceError
from featx.io import EXTRACTION_KEYS, load_gmm, load_guidance, load_pca, load_svm
from featx.io import read_header, require_fit, save_maps, shard_paths
from featx.pyramids import check_guidance_scales, pyramid_pca
from featx.io.activations import ActivationShard
from featx.windows import accumulate, cell_boxes, patch_fisher_scores, patch_window, window_boxes
from featx.stages import Output, Stage
from featx.configs import MapsConfig  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

FISHER_SINGLE = ("fisher", "mpp", "nfk")  # methods whose one-vector encoding is the improved FV
_PHOTO_SIDE = 384  # the longest side a photo is drawn at


@dataclass(frozen=True)
class MapsPlan:
    """The activation shards (``paths``, their image ``counts``), the first's header, the
    painter made for them, and the images drawn (``picked``: their places in the inputs)."""

    paths: list[Path]
    head: dict
    painter: Callable
    counts: list[int]
    picked: set[int]


class Maps(Stage):
    """Draw where the evidence lies in each image of activation shards: one PNG an image
    (photo + a panel per class or channel), and the raw maps in maps.h5."""

    name = "maps"

    def plan(self, inputs: Sequence[str]) -> MapsPlan:
        cfg = self.cfg
        paths = shard_paths(inputs)
        head = read_header(paths[0])
        if head.get("kind") != "activations":
            raise InputError(f"{paths[0]} holds {head.get('kind')!r}, not activations (featx "
                             "extract): maps are drawn from activations")
        for p in paths[1:]:
            require_fit(read_header(p), {k: head[k] for k in EXTRACTION_KEYS}, str(p),
                        "draw maps of one extraction at a time")
        painter = _painter(cfg, head, self.device)
        counts = [len(read_header(p)["ids"]) for p in paths]
        total = sum(counts)
        # --limit N: N images spread evenly over the inputs (every class of a sorted split)
        picked = set(np.linspace(0, total - 1, min(cfg.limit, total)).round().astype(int)
                     .tolist()) if cfg.limit else set(range(total))
        return MapsPlan(paths, head, painter, counts, picked)

    def inputs_of(self, p: MapsPlan) -> list[Path]:
        models = [Path(m) for m in (self.cfg.model, self.cfg.gmm, self.cfg.pca,
                                    self.cfg.guidance) if m]
        return [*p.paths, *models]

    def work(self, p: MapsPlan, output: Output) -> Iterator[Path]:
        cfg, folder = self.cfg, output.folder
        advance = output.start(f"maps ({cfg.kind})", len(p.picked))
        raw: dict[str, np.ndarray] = {}
        ids: list[str] = []
        panels: list[list[str]] = []
        offset = 0
        with torch.inference_mode():
            for path, count in zip(p.paths, p.counts):
                rows = [i for i in range(count) if offset + i in p.picked]
                offset += count
                if not rows:
                    continue
                with ActivationShard(path) as shard:
                    files = _image_files(shard, cfg.images)
                    for i in rows:
                        interrupt.check()
                        photo = _photo(files[i], shard.ids[i])
                        names, maps, title, label = p.painter(shard, i, photo.shape[:2])
                        stem = _safe(os.path.splitext(shard.ids[i])[0])
                        png = folder.path / f"{len(ids):05d}-{stem}.png"
                        plots.overlays(photo, list(zip(names, maps)), png, title=title,
                                       signed=cfg.kind != "channels"
                                       or any(float(m.min()) < 0 for m in maps), label=label)
                        raw[f"map_{len(ids):05d}"] = np.stack(maps).astype(np.float32)
                        ids.append(shard.ids[i])
                        panels.append(names)
                        yield folder.keep(png)
                        advance(1)
        head = p.head
        yield folder.keep(save_maps(folder.path / "maps.h5", raw, output.provenance(
            kind_of_map=cfg.kind, ids=ids, panels=panels,
            model=str(cfg.model or ""), gmm=str(cfg.gmm or ""), pca=str(cfg.pca or ""),
            guidance=str(cfg.guidance or ""), layer=cfg.layer or "", reduce=cfg.reduce,
            **{k: head[k] for k in EXTRACTION_KEYS})))


def run(inputs: Sequence[str], out: str | Path, cfg: MapsConfig, **kw) -> list[Path]:
    """:meth:`Maps.run`: maps of ``inputs``' images into ``out``."""
    return Maps(cfg).run(inputs, out, **kw)


def _safe(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)[-60:]


def _image_files(shard: ActivationShard, images: str | None) -> list[str]:
    """Where each image of the shard is now: as recorded at extract, or re-rooted under
    ``images`` (by its path below the recorded image root, else by its id)."""
    recorded = shard.paths
    root = shard.attrs.get("image_root", "")
    if images is None:
        if recorded is None:
            raise InputError(f"{shard.path} does not record where its images are (extracted "
                             "before featx did); pass --images DIR")
        return recorded
    if recorded is None or not root:
        return [os.path.join(images, i) for i in shard.ids]
    return [os.path.join(images, os.path.relpath(p, root)) for p in recorded]


def _photo(path: str, image_id: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((_PHOTO_SIDE, _PHOTO_SIDE))
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the image of {image_id} at {path} ({exc}); pass "
                         "--images DIR where the images are now") from None


def _grid(shape: tuple[int, int], resolution: int) -> tuple[int, int]:
    h, w = shape
    s = resolution / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _pick(scores: np.ndarray, names: list[str], cfg: MapsConfig) -> list[int]:
    """The classes to draw: --classes by name, else the --top N by ``scores``."""
    if cfg.classes:
        missing = [c for c in cfg.classes if c not in names]
        if missing:
            raise InputError(f"unknown class {missing[0]!r}; the model has {', '.join(names)}")
        return [names.index(c) for c in cfg.classes]
    return list(np.argsort(-scores, kind="stable")[:cfg.top])


def _svm(cfg: MapsConfig, methods: Sequence[str], digest_key: str, model_file: str):
    """The SVM's weights, biases and class names, checked to be trained on single-block
    encodings of ``methods`` made with ``model_file``."""
    weights, biases, attrs = load_svm(cfg.model)
    if len(attrs.get("methods") or []) != 1 or attrs["methods"][0] not in methods or \
            len(attrs.get("views") or []) != 1:
        raise InputError(f"{cfg.model} was trained on {'+'.join(attrs.get('methods') or [])} "
                         f"encodings of views {attrs.get('views')}; these maps need one of "
                         f"{', '.join(methods)} on one view")
    if attrs.get(digest_key) != file_digest(model_file):
        raise ProvenanceError(f"{cfg.model} was trained on encodings made with another "
                              f"{digest_key.split('_')[0]} than {model_file}")
    names = attrs.get("classes") or [str(c) for c in range(len(biases))]
    return weights, biases, names, attrs


# the painters by the kind of map they draw: a function (cfg, activations' header, device)
# -> a function (shard, row, photo shape) -> (panel names, maps, title, the maps' units).
# A new kind of map is one registered function (and its MapsConfig.painter name).
PAINTERS: dict[str, Callable] = {}


def painter(name: str):
    """Register the decorated painter as ``name``."""
    def register(fn: Callable) -> Callable:
        if name in PAINTERS:
            raise ValueError(f"painter {name!r} is registered twice")
        PAINTERS[name] = fn
        return fn
    return register


def _painter(cfg: MapsConfig, head: dict, device: torch.device):
    """The painter of cfg's kind, made for these activations."""
    return PAINTERS[cfg.painter](cfg, head, device)


@painter("confidence")
def _confidence(cfg: MapsConfig, head: dict, device: torch.device):
    """Object confidence maps of the Fisher family (Yoo et al. §4.5)."""
    fits = {k: head[k] for k in EXTRACTION_KEYS}
    gmm, gattrs = load_gmm(cfg.gmm, device)
    require_fit(gattrs, {**fits, "view": "pyramid"}, cfg.gmm, "fitted on these activations")
    weights, biases, names, mattrs = _svm(cfg, FISHER_SINGLE, "gmm_sha256", cfg.gmm)
    require_fit(mattrs, fits, cfg.model, "trained on these activations")
    layer, params = gattrs["layer"], gmm_params(gmm)
    project = pyramid_pca(head, gattrs, cfg.gmm, cfg.pca, device)
    sizes = head["pyramid_sizes"]

    def confidence(shard, i, shape):
        scales = [torch.from_numpy(x[0]).to(device)
                  for x in shard.pyramid(layer, slice(i, i + 1))]
        if project is not None:
            scales = [project.transform(x) for x in scales]
        counts = [x.shape[0] for x in scales]
        boxes = np.concatenate(window_boxes(
            sizes, counts, patch_window(sizes, counts, head["input_size"]),
            (head.get("pyramid_geometry") or {}).get(layer)))
        s = patch_fisher_scores(torch.cat(scales), params, weights, biases)
        conf = accumulate(boxes, s, _grid(shape, cfg.resolution),
                          mean=cfg.reduce == "mean")  # (H, W, C)
        chosen = _pick(conf.mean((0, 1)), names, cfg)
        how = "mean patch score" if cfg.reduce == "mean" else \
            "patch scores accumulated, Yoo §4.5"
        unit = ("SVM score, mean of the patches on a pixel" if cfg.reduce == "mean" else
                "SVM score, sum of the patches on a pixel")
        return ([names[c] for c in chosen], [conf[..., c] for c in chosen],
                f"{shard.ids[i]}: confidence ({how})", unit)

    return confidence


@painter("contribution-guided")
def _contribution_guided(cfg: MapsConfig, head: dict, device: torch.device):
    """Scheme 2's contribution maps: each pyramid region's share of the SVM's score."""
    fits = {k: head[k] for k in EXTRACTION_KEYS}
    guidance, gattrs, project = _guidance(cfg, head, device)
    weights, biases, names, mattrs = _svm(cfg, ("cross-layer-guided",), "guidance_sha256",
                                          cfg.guidance)
    require_fit(mattrs, fits, cfg.model, "trained on these activations")
    w = torch.as_tensor(weights, device=device)
    power, l2 = _normalisation(mattrs, cfg.model)

    def guided(shard, i, shape):
        scales = _regions(shard, i, gattrs, project, device)
        sizes, counts = gattrs["pyramid_sizes"], [x.shape[0] for x in scales]
        geometry = (head.get("pyramid_geometry") or {}).get(gattrs["layer"])
        boxes = np.concatenate(window_boxes(
            sizes, counts, patch_window(sizes, counts, head["input_size"]),
            [geometry[s] for s in gattrs["scales"]] if geometry else None))
        # every scale's regions pool into one P: their positions side by side
        a = torch.cat([guidance_maps(vectors_as_map(x[None]), guidance.weight,
                                     guidance.bias)[0].flatten(1).T for x in scales])
        c, rest = score_contributions(torch.cat(scales)[None], a[None], w, power, l2)
        return _contribution_panels(c[0].cpu().numpy(), rest[0].cpu().numpy(), biases,
                                    boxes, names, shape, shard.ids[i], cfg)

    return guided


@painter("contribution")
def _contribution(cfg: MapsConfig, head: dict, device: torch.device):
    """Scheme 1's contribution maps: each local position's share of the SVM's score."""
    fits = {k: head[k] for k in EXTRACTION_KEYS}
    weights, biases, names, mattrs = _svm(cfg, ("cross-layer",), "pca_sha256", cfg.pca)
    require_fit(mattrs, fits, cfg.model, "trained on these activations")
    if mattrs["views"] != ["whole"]:
        raise InputError(f"{cfg.model} was trained on views {mattrs['views']}; contribution "
                         "maps are drawn for the whole view")
    pca, pattrs = load_pca(cfg.pca, device)
    spec, local = LocalSpec.parse(pattrs["local"]), pattrs["layer"]
    guide = get_backbone(head["backbone"]).guide_for(local)
    shapes = head["layer_shapes"]
    if guide not in shapes or local not in shapes:
        raise InputError(f"the activations hold no {local}/{guide} pair; maps of a "
                         "cross-layer model read both")
    c, h, wd = shapes[local]
    grid = CrossLayerGrid.of((h, wd), tuple(shapes[guide][1:]), spec.size)
    conv = pca.as_conv(c, *spec.size)
    boxes = cell_boxes(grid.rows.count, grid.cols.count, (grid.rows.first, grid.cols.first),
                       tuple(shapes[guide][1:]))
    w = torch.as_tensor(weights, device=device)
    power, l2 = _normalisation(mattrs, cfg.model)

    def scheme1(shard, i, shape):
        rows = slice(i, i + 1)
        x = project_subarrays(torch.from_numpy(shard.read("whole", local, rows)[:, 0])
                              .to(device), *conv, grid).flatten(2).transpose(1, 2)
        a = guide_at(torch.from_numpy(shard.read("whole", guide, rows)[:, 0]).to(device),
                     grid).flatten(2).transpose(1, 2)
        c, rest = score_contributions(x, a, w, power, l2)
        return _contribution_panels(c[0].cpu().numpy(), rest[0].cpu().numpy(), biases,
                                    boxes, names, shape, shard.ids[i], cfg)

    return scheme1


@painter("channels-guided")
def _guidance_channels(cfg: MapsConfig, head: dict, device: torch.device):
    """The trained guidance's channels over the photo (scheme 2)."""
    guidance, gattrs, project = _guidance(cfg, head, device)

    def guide_channels(shard, i, shape):
        x = _regions(shard, i, gattrs, project, device)[-1]  # the finest scale used
        a = guidance_maps(vectors_as_map(x[None]), guidance.weight, guidance.bias)[0]
        return _channel_panels(a.cpu().numpy(), shape, shard.ids[i], "guidance", cfg)

    return guide_channels


@painter("channels")
def _layer_channels(cfg: MapsConfig, head: dict, device: torch.device):
    """A grid layer's channels over the photo (Liu et al. Fig. 4)."""
    if cfg.layer not in head.get("layer_shapes", {}) or "whole" not in \
            [v.split(":")[0] for v in head["views"]]:
        raise InputError(f"the activations hold no whole-view {cfg.layer!r}; they hold "
                         f"{', '.join(head.get('layer_shapes', {})) or 'none'}")

    def layer_channels(shard, i, shape):
        a = shard.read("whole", cfg.layer, slice(i, i + 1))[0, 0]
        if a.ndim != 3:
            raise InputError(f"{cfg.layer} is not a feature map (shape {a.shape})")
        return _channel_panels(a, shape, shard.ids[i], cfg.layer, cfg)

    return layer_channels


def _normalisation(attrs: dict, model: str) -> tuple[bool, bool]:
    """(signed square root, L2) of the encodings an SVM was trained on."""
    if attrs.get("quantize", "none") != "none":
        raise InputError(f"{model} was trained on sign-quantised encodings; contribution maps "
                         "decompose the score of real-valued ones")
    norms = attrs.get("normalisation")
    if norms:
        return "sqrt" in norms[0], "l2" in norms[0]
    return attrs.get("power_norm") is not False, attrs.get("l2", True) is not False


def _contribution_panels(c: np.ndarray, rest: np.ndarray, biases: np.ndarray, boxes: np.ndarray,
                         names: list[str], shape, image_id: str, cfg: MapsConfig):
    """Panels of per-position contributions (N, C) to the SVM's score laid on the image:
    each cell the mean of the contributions of the positions whose boxes cover it. The
    panels are titled with the SVM's decision value (positions + interaction + bias) and
    --top ranks the classes by it."""
    decision = c.sum(0) + rest + np.asarray(biases, dtype=np.float64)
    chosen = _pick(decision, names, cfg)
    grid = _grid(shape, cfg.resolution)
    maps = accumulate(boxes, c[:, chosen], grid, mean=True)
    return ([f"{names[k]} (SVM score {decision[k]:.3g})\n= regions {c[:, k].sum():.2g} + "
             f"interaction {rest[k]:.2g} + bias {biases[k]:.2g}" for k in chosen],
            [maps[..., j] for j in range(len(chosen))],
            f"{image_id}: leave-one-out shares of the SVM score",
            "share of the SVM score (mean on a pixel)")


def _channel_panels(a: np.ndarray, shape, image_id: str, what: str, cfg: MapsConfig):
    """Panels of channels (C, h, w) resized to the image grid: --channels, else the --top N
    by mean activation."""
    if cfg.channels:
        bad = [c for c in cfg.channels if not 0 <= c < a.shape[0]]
        if bad:
            raise InputError(f"channel {bad[0]} is out of range: {what} has {a.shape[0]}")
        chosen = list(cfg.channels)
    else:
        chosen = list(np.argsort(-a.mean((1, 2)), kind="stable")[:cfg.top])
    h, w = a.shape[1:]
    boxes = cell_boxes(h, w, (0, 0), (h, w))
    grid = _grid(shape, cfg.resolution)
    maps = accumulate(boxes, a.reshape(a.shape[0], -1).T[:, chosen], grid)
    return ([f"{what} channel {c}" for c in chosen], [maps[..., j] for j in range(len(chosen))],
            f"{image_id}: {what} channels", f"{what} activation")


def _guidance(cfg: MapsConfig, head: dict, device: torch.device):
    guidance, gattrs = load_guidance(cfg.guidance, device)
    require_fit(gattrs, {**{k: head[k] for k in EXTRACTION_KEYS}, "view": "pyramid"},
                cfg.guidance, "trained on these activations")
    check_guidance_scales(head, gattrs, cfg.guidance)
    project = pyramid_pca(head, gattrs, cfg.guidance, cfg.pca, device)
    return guidance, gattrs, project


def _regions(shard, i: int, gattrs: dict, project, device) -> list[torch.Tensor]:
    pyr = shard.pyramid(gattrs["layer"], slice(i, i + 1))
    xs = [torch.from_numpy(pyr[s][0]).to(device) for s in gattrs["scales"]]
    return [project.transform(x) for x in xs] if project is not None else xs
