"""The encode stage: activation shards -> encoding shards (one per activation shard).

Methods (DESIGN.md, encode; Liu et al. CVPR 2015 Tables 1-4 and 7):

| method | from | reads |
|---|---|---|
| ``cross-layer`` | PCA-reduced subarrays of layer t pooled by layer t+1 (CL-45) | local + guide layer |
| ``global`` | the FC vector of the whole image (CNN-Global) | fc7 (or ``pool``) |
| ``jitter`` | the mean FC vector over the 10 jittered inputs (CNN-Jitter) | fc7 of ``jitter`` |
| ``max`` / ``sum-sqrt`` | direct max / sum pooling of the same local features | local layer |
| ``spp`` | spatial pyramid (1x1, 2x2, 4x4) max pooling of them | local layer |

Local-feature methods run on each view in ``views``; the inputs of a view are pooled together
(``blocks`` = CL-45F) and several views are concatenated (``whole,blocks`` = CL-45C). Several
methods are concatenated too (e.g. ``cross-layer,global``). Each block is normalised (signed
square root, L2) before joining, and the joined vector has unit norm.

The PCA projection of all m x n subarrays is one convolution with the components as filters
(about 2x faster than unfold + matmul on CPU). Where layer t+1's grid is coarser than layer t's
by a stride s (ResNet stages), the subarrays are centred on the units of layer t+1: unit p of
layer t+1 sits over unit s * p of layer t; positions whose subarray would leave the map are
omitted, as on a single grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

import featx
from featx import encoders
from featx.backbones import get_backbone
from featx.errors import InputError, OutputExistsError, ProvenanceError
from featx.fit import PCA
from featx.local import LocalSpec, check_activations_fit, pyramid_features
from featx.models import file_digest, load_pca
from featx.runtime import progress_bar, rank_and_world, resolve_device
from featx.shards import ShardWriter, check_provenance, prepare_output, read_attrs
from featx.shards import read_shard_header, shard_paths

log = logging.getLogger(__name__)

METHODS = ("cross-layer", "global", "jitter", "max", "sum-sqrt", "spp", "fisher", "vlad", "mpp",
           "nfk", "csf")
LOCAL_METHODS = {"cross-layer", "max", "sum-sqrt", "spp"}
FISHER_METHODS = {"fisher", "vlad", "mpp", "nfk", "csf"}
_BLOCK = 32  # images per read / compute step


@dataclass(frozen=True)
class Grid:
    """Where the subarrays of layer t meet the units of layer t+1, along one axis."""

    stride: int  # s: units of layer t per unit of layer t+1
    first: int  # p0: first unit of layer t+1 whose subarray fits
    start: int  # t0 = s * p0 - m // 2: first subarray's top/left row of layer t
    count: int  # positions along the axis

    @classmethod
    def of(cls, size_t: int, size_g: int, m: int) -> Grid:
        if size_t % size_g:
            raise InputError(f"layer grids {size_t} and {size_g} are not related by an integer "
                             "stride; choose another layer pair")
        s, half = size_t // size_g, m // 2
        p0 = math.ceil(half / s)
        t0 = s * p0 - half
        count = min((size_t - t0 - m) // s + 1, size_g - p0)
        if count < 1:
            raise InputError(f"{m}-wide subarrays do not fit a {size_t}-unit map")
        return cls(s, p0, t0, count)


def pca_filters(pca: PCA, channels: int, m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The PCA as conv2d weights (D', C, m, n) and bias, applied to every m x n subarray."""
    w = pca.components_.reshape(-1, channels, m, n)
    b = -(pca.components_ @ pca.mean_)
    if pca.whiten:
        scale = pca.explained_variance_.sqrt()
        w, b = w / scale[:, None, None, None], b / scale
    return w, b


def project_local(acts: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gh: Grid,
                  gw: Grid) -> torch.Tensor:
    """PCA-reduced subarrays at the cross-layer positions: (B, C, H, W) -> (B, D', h, w)."""
    x = acts[:, :, gh.start:, gw.start:]
    out = F.conv2d(x, w, b, stride=(gh.stride, gw.stride))
    return out[:, :, :gh.count, :gw.count]


@dataclass
class EncodeConfig:
    methods: Sequence[str] = ("cross-layer",)
    views: Sequence[str] = ("whole",)
    pca: str | None = None
    gmm: str | None = None  # GMM of the (PCA-reduced) pyramid vectors, for the Fisher methods
    layers: Sequence[str] | None = None  # (local t, guide t+1); default: PCA's layer + pair
    fc_layer: str | None = None  # for global/jitter; default fc7, else pool
    power_norm: bool = True
    l2: bool = True
    quantize: str | None = None  # None or "sign"
    dtype: str = "float32"
    device: str = "auto"
    overwrite: bool = False
    show_progress: bool = True
    command: str = ""


class _Encoder:
    """Holds what one encode run needs (PCA filters, layer names) and encodes batches."""

    def __init__(self, cfg: EncodeConfig, head: dict, device: torch.device):
        self.cfg, self.device = cfg, device
        unknown = [m for m in cfg.methods if m not in METHODS]
        if unknown or not cfg.methods:
            raise InputError(f"unknown method {unknown[0] if unknown else ''!r}; valid: "
                             f"{', '.join(METHODS)}")
        bad_views = [v for v in cfg.views if v not in ("whole", "blocks", "jitter")]
        if not LOCAL_METHODS & set(cfg.methods):
            bad_views = []
        if bad_views:
            raise InputError(f"unknown view {bad_views[0]!r}; valid: whole, blocks, jitter")
        self.layers_needed: set[tuple[str, str]] = set()
        self.pca_attrs: dict = {}
        if LOCAL_METHODS & set(cfg.methods):
            if not cfg.pca:
                raise InputError("methods cross-layer, max, sum-sqrt and spp need --pca "
                                 "(a PCA from featx fit-pca)")
            pca, self.pca_attrs = load_pca(cfg.pca, str(device))
            check_activations_fit(self.pca_attrs, head, cfg.pca)
            spec = LocalSpec.parse(self.pca_attrs["local"])
            if spec.kind != "subarray":
                raise ProvenanceError(f"{cfg.pca} was fitted on {spec} features; cross-layer "
                                      "pooling needs a PCA of subarray:MxN features")
            self.local = self.pca_attrs["layer"]
            bb = get_backbone(head["backbone"])
            guide = bb.cross_layer[1] if bb.cross_layer and bb.cross_layer[0] == self.local else None
            if cfg.layers:
                if len(cfg.layers) != 2:
                    raise InputError("--layers takes two layers: LOCAL,GUIDE (t and t+1)")
                if cfg.layers[0] != self.local:
                    raise ProvenanceError(f"{cfg.pca} was fitted on layer {self.local}, this "
                                          f"encoding pools layer {cfg.layers[0]}; fit a PCA on "
                                          f"{cfg.layers[0]} (featx fit-pca --layer {cfg.layers[0]})")
                guide = cfg.layers[1]
            if guide is None:
                raise InputError(f"no default guidance layer for local layer {self.local}; pass "
                                 f"--layers {self.local},GUIDE")
            self.guide = guide
            shapes = head["layer_shapes"]
            for layer in (self.local, guide):
                if layer not in shapes:
                    raise InputError(f"the activations hold no layer {layer!r}; they hold "
                                     f"{', '.join(shapes)}")
            c, h, w = shapes[self.local]
            if list(self.pca_attrs["layer_shape"]) != [c, h, w]:
                raise ProvenanceError(f"{cfg.pca} was fitted on {self.local} maps of shape "
                                      f"{self.pca_attrs['layer_shape']}, these are {[c, h, w]}")
            _, gh_, gw_ = shapes[guide]
            m, n = spec.size
            self.gh, self.gw = Grid.of(h, gh_, m), Grid.of(w, gw_, n)
            self.w, self.b = pca_filters(pca, c, m, n)
            for v in cfg.views:
                self.layers_needed |= {(v, self.local), (v, guide)}
        if FISHER_METHODS & set(cfg.methods):
            self._init_fisher(cfg, head)
        if {"global", "jitter"} & set(cfg.methods):
            self.fc = cfg.fc_layer or ("fc7" if "fc7" in head["layers"] else "pool")
            if "global" in cfg.methods:
                self.layers_needed.add(("whole", self.fc))
            if "jitter" in cfg.methods:
                self.layers_needed.add(("jitter", self.fc))
        self.blocks: list[tuple[str, str]] = []  # (method, view) in output order
        for method in cfg.methods:
            if method in LOCAL_METHODS:
                self.blocks += [(method, v) for v in cfg.views]
            elif method in FISHER_METHODS:
                self.blocks.append((method, "pyramid"))
            else:
                self.blocks.append((method, "jitter" if method == "jitter" else "whole"))

    def _init_fisher(self, cfg: EncodeConfig, head: dict) -> None:
        from featx.models import load_gmm

        if not cfg.gmm:
            raise InputError("methods fisher, vlad, mpp, nfk and csf need --gmm (featx fit-gmm)")
        gmm, gattrs = load_gmm(cfg.gmm, str(self.device))
        check_activations_fit(gattrs, head, cfg.gmm)
        if gattrs["view"] != "pyramid":
            raise ProvenanceError(f"{cfg.gmm} was fitted on the {gattrs['view']} view; the "
                                  "Fisher methods encode the pyramid view")
        self.fv_layer = gattrs["layer"]
        if (self.fv_layer not in head["layers"]) or not head.get("pyramid_sizes"):
            raise InputError(f"the activations hold no pyramid of {self.fv_layer}; extract with "
                             f"--views pyramid --layers {self.fv_layer}")
        self.gmm = gmm
        self.fv_project = None
        if head.get("projected"):
            if head["projected"] != gattrs["pca_sha256"]:
                raise ProvenanceError(f"the activations were projected with another PCA than "
                                      f"the one {cfg.gmm} was fitted on")
        else:
            pca_path = cfg.pca or gattrs["pca"]
            if not Path(pca_path).is_file() or file_digest(pca_path) != gattrs["pca_sha256"]:
                raise ProvenanceError(f"{cfg.gmm} was fitted on features reduced by "
                                      f"{gattrs['pca']} (sha256 {gattrs['pca_sha256']}); pass "
                                      "that PCA with --pca")
            self.fv_project = load_pca(pca_path, str(self.device))[0]
        self.layers_needed.add(("pyramid", self.fv_layer))

    def _fisher(self, method: str, scales: list[torch.Tensor]) -> torch.Tensor:
        if self.fv_project is not None:
            scales = [self.fv_project.transform(x.flatten(0, 1)).view(*x.shape[:2], -1)
                      for x in scales]
        g = self.gmm
        if method == "fisher":  # improved FV of all scales' vectors as one set
            return encoders.fisher_vector(torch.cat(scales, 1), g.means_, g.variances_, g.priors_)
        if method == "vlad":
            return encoders.vlad(torch.cat(scales, 1), g.means_)
        return {"mpp": encoders.mpp, "nfk": encoders.nfk, "csf": encoders.csf}[method](scales, g)

    def _local_maps(self, local: torch.Tensor) -> torch.Tensor:
        return project_local(local, self.w, self.b, self.gh, self.gw)

    def encode(self, acts: dict[tuple[str, str], torch.Tensor]) -> list[torch.Tensor]:
        """acts[(view, layer)]: (B, V, ...) float32 -> normalised blocks (B, d_i)."""
        out = []
        for method, view in self.blocks:
            if method in FISHER_METHODS:  # normalised by their definitions
                out.append(self._fisher(method, acts[(view, self.fv_layer)]))
                continue
            if method in ("global", "jitter"):
                vec = acts[(view, self.fc)].flatten(2).mean(1)  # (B, C): mean over the inputs
            else:
                x = acts[(view, self.local)]
                b, v = x.shape[:2]
                maps = self._local_maps(x.flatten(0, 1))  # (B*V, D', h, w)
                if method == "cross-layer":
                    g = acts[(view, self.guide)].flatten(0, 1)
                    g = g[:, :, self.gh.first:self.gh.first + self.gh.count,
                          self.gw.first:self.gw.first + self.gw.count]
                    p = encoders.cross_layer_pool(maps.flatten(2).transpose(1, 2),
                                                  g.flatten(2).transpose(1, 2))
                    vec = p.view(b, v, -1).sum(1)  # the views' inputs pooled together
                elif method == "spp":
                    vec = encoders.spp(maps).view(b, v, -1).amax(1)
                else:
                    local = maps.flatten(2).transpose(1, 2).reshape(b, -1, maps.shape[1])
                    vec = encoders.max_pool(local) if method == "max" else encoders.sum_pool(local)
            power = self.cfg.power_norm or method == "sum-sqrt"
            out.append(encoders.normalize(vec, power=power, l2=self.cfg.l2))
        return out


def encode_shards(inputs: Sequence[str], out: str | Path, cfg: EncodeConfig) -> Iterator[Path]:
    """Encode every activation shard of ``inputs`` into ``out``; yield each output path.

    Output shard i has the name of input shard i. A rerun keeps complete outputs made with
    the same settings (resume); others are refused unless ``cfg.overwrite``. Under torchrun,
    rank r encodes input shards r, r + world, ...
    """
    rank, world = rank_and_world()
    paths = shard_paths(inputs)[rank::world]
    if not paths:
        return
    heads = [read_shard_header(p) for p in paths]
    for p, h in zip(paths, heads):
        if h.get("kind") != "activations":
            raise InputError(f"{p} holds {h.get('kind')!r}, not activations (featx extract)")
        check_provenance(h, {k: heads[0][k] for k in ("backbone", "weights", "input_size")}, str(p))
    if len({p.name for p in paths}) != len(paths):
        raise InputError("input shards share file names; encode one extraction folder at a time")
    device = resolve_device(cfg.device)
    enc = _Encoder(cfg, heads[0], device)
    if cfg.quantize not in (None, "sign"):
        raise InputError(f"unknown quantisation {cfg.quantize!r}; valid: sign")
    out = prepare_output(out, cfg.overwrite)
    signature = {
        "kind": "encodings", "methods": list(cfg.methods), "views": list(cfg.views),
        "power_norm": cfg.power_norm, "l2": cfg.l2, "quantize": cfg.quantize or "none",
        "pca_sha256": file_digest(cfg.pca) if cfg.pca else "",
        "gmm_sha256": file_digest(cfg.gmm) if cfg.gmm else "",
    }
    dtype = {"float32": np.float32, "float16": np.float16}[cfg.dtype]
    progress = progress_bar("img", cfg.show_progress)
    with progress, torch.inference_mode():
        task = progress.add_task("encode", total=sum(len(h["ids"]) for h in heads))
        for path, head in zip(paths, heads):
            target = out / path.name
            if target.exists():
                old = read_shard_header(target)
                try:
                    check_provenance(old, signature, f"existing {target}")
                except ProvenanceError as exc:
                    raise OutputExistsError(f"{exc}; pass --overwrite to replace it") from None
                if old["ids"] != head["ids"]:
                    raise OutputExistsError(f"existing {target} holds other images than {path}; "
                                            "pass --overwrite to replace it")
                progress.advance(task, len(head["ids"]))
                yield target
                continue
            yield _encode_one(path, head, target, enc, cfg, signature, dtype, progress, task)


def _encode_one(path, head, target, enc: _Encoder, cfg, signature, dtype, progress, task) -> Path:
    with h5py.File(path, "r") as f:
        labels = f["labels"] if "labels" in f else None
        classes = head.get("classes", [])
        labelled = None if labels is None else ("multi" if labels.ndim == 2 else "single")
        attrs = {
            **signature, "backbone": head["backbone"], "weights": head["weights"],
            "input_size": head["input_size"], "classes": classes, "split": head.get("split", ""),
            "source": str(path), "pca": str(Path(cfg.pca).resolve()) if cfg.pca else "",
            "local_layer": getattr(enc, "local", ""), "guide_layer": getattr(enc, "guide", ""),
            "fc_layer": getattr(enc, "fc", ""), "featx_version": featx.__version__,
            "command": cfg.command, "dtype": cfg.dtype,
        }
        writer = ShardWriter(target, attrs, labelled=labelled, num_classes=len(classes))
        try:
            ids = head["ids"]
            dims = None
            for start in range(0, len(ids), _BLOCK):
                sl = slice(start, start + _BLOCK)
                acts = {}
                for view, layer in enc.layers_needed:
                    name = f"acts/{view}/{layer}"
                    if view == "pyramid":
                        acts[(view, layer)] = [x.to(enc.device)
                                               for x in pyramid_features(f, layer, sl)]
                        continue
                    if name not in f:
                        raise InputError(f"{path} has no {name}; extract with --views {view} "
                                         f"and --layers including {layer}")
                    acts[(view, layer)] = torch.from_numpy(f[name][sl]).to(enc.device).float()
                blocks = enc.encode(acts)
                dims = [b.shape[1] for b in blocks]
                if len(blocks) == 1:
                    vec = blocks[0]
                else:  # unit-norm blocks joined with equal weight; unnormalised ones as they are
                    vec = encoders.concat_normalized(blocks) if cfg.l2 else torch.cat(blocks, 1)
                if not torch.isfinite(vec).all():
                    raise InputError(f"non-finite encodings for images of {path}")
                arr = vec.cpu().numpy()
                data = ({"codes": encoders.pack_sign(arr)} if cfg.quantize == "sign"
                        else {"enc": arr.astype(dtype)})
                lab = labels[sl] if labels is not None else None
                writer.append(ids[sl], data, lab)
                progress.advance(task, len(ids[sl]))
            for sid, reason in zip(head["skipped_ids"], _skipped_reasons(f)):
                writer.skip(sid, reason)
            writer.group_attrs("/", {
                "dim": int(sum(dims)) if dims else 0,
                "blocks": [{"method": m, "view": v, "dim": d}
                           for (m, v), d in zip(enc.blocks, dims or [])],
            })
            return writer.commit()
        except BaseException:
            writer.abort()
            raise


def _skipped_reasons(f: h5py.File) -> list[str]:
    return [s.decode() for s in f["skipped_reasons"][:]]


def read_encodings(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray | None, dict]:
    """ids, encodings (N, dim) float32 (sign codes unpacked), labels or None, attributes."""
    with h5py.File(path, "r") as f:
        attrs = read_attrs(f)
        if attrs.get("kind") != "encodings":
            raise InputError(f"{path} holds {attrs.get('kind')!r}, not encodings (featx encode)")
        ids = [s.decode() for s in f["ids"][:]]
        if "codes" in f:
            x = encoders.unpack_sign(f["codes"][:], attrs["dim"])
        else:
            x = f["enc"][:].astype(np.float32)
        labels = f["labels"][:] if "labels" in f else None
    return ids, x, labels, attrs
