"""Encoding activations, shared by the stages that do it: ``encode`` (from activation
shards) and ``extract --encode`` (the fused pass, from each batch's activations in memory).

:class:`EncodeConfig` holds the settings; :func:`encoding_plan` checks the models against the
activations' provenance and builds the :class:`featx.methods.EncodePlan`;
:class:`ShardEncoder` writes one encoding shard from rows of activations, encoded in blocks
of :data:`BLOCK` images counted from the shard's first image -- the same blocks, whichever
way the rows arrive, so both stages write the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx import interrupt
from featx.backbones import get_backbone
from featx.digest import file_digest
from featx.encoders import CrossLayerGrid, LocalSpec
from featx.errors import InputError, ProvenanceError
from featx.io import EXTRACTION_KEYS, EncodingWriter, load_gmm, load_guidance, load_pca
from featx.io import require_fit
from featx.pyramids import check_guidance_scales, pyramid_pca
from featx.methods import Context, EncodePlan, Method, get_methods
from featx.configs import DTYPES, QUANTIZE, EncodeConfig  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

BLOCK = 32  # images per read / compute step


def encoding_plan(cfg: EncodeConfig, head: Mapping[str, Any], device: torch.device
                  ) -> EncodePlan:
    """The plan of ``cfg``'s methods on activations with header ``head`` (models loaded and
    checked against it)."""
    methods = get_methods(cfg.method_names)
    return EncodePlan(methods, tuple(cfg.views), _context(cfg, methods, head, device),
                      cfg.power_norm, cfg.l2)


def signature(cfg: EncodeConfig, plan: EncodePlan) -> dict[str, Any]:
    """What an encoding shard of these settings records and a resume compares."""
    return {
        "kind": "encodings", "methods": list(cfg.method_names), "views": list(cfg.views),
        "power_norm": cfg.power_norm, "normalisation": plan.normalisation(), "l2": cfg.l2,
        "quantize": cfg.quantize,
        "pca_sha256": file_digest(cfg.pca) if cfg.pca else "",
        "gmm_sha256": file_digest(cfg.gmm) if cfg.gmm else "",
        "guidance_sha256": file_digest(cfg.guidance) if cfg.guidance else "",
    }


def described(cfg: EncodeConfig, plan: EncodePlan) -> dict[str, Any]:
    """The other attributes an encoding shard records (beside :func:`signature`)."""
    layers = plan.context.layers
    return {"pca": str(Path(cfg.pca).resolve()) if cfg.pca else "",
            "gmm": str(Path(cfg.gmm).resolve()) if cfg.gmm else "",
            "guidance": str(Path(cfg.guidance).resolve()) if cfg.guidance else "",
            "local_layer": layers.get("local", ""), "guide_layer": layers.get("guide", ""),
            "fc_layer": layers.get("fc", ""), "dtype": cfg.dtype}


class ShardEncoder:
    """One encoding shard written from rows of activations: :meth:`append` them in any
    batches (numpy arrays as stored: grid ``{(view, layer): (b, V, ...)}``, pyramid
    ``{("pyramid", layer): [(b, n_s, C) per scale]}``); every :data:`BLOCK` rows from the
    shard's first are encoded and written, the rest at :meth:`commit`."""

    def __init__(self, target: Path, plan: EncodePlan, cfg: EncodeConfig, attrs: dict,
                 *, label_kind: str | None, num_classes: int, images: int, device: torch.device,
                 folder, source: str, writer=None):
        self.plan, self.cfg, self.device, self.folder = plan, cfg, device, folder
        self.images, self.source = images, source
        # where the encodings go: an encoding shard, or (featx predict) a scorer with the
        # same append / skip / commit / abort
        self.writer = writer or EncodingWriter(target, attrs, label_kind=label_kind,
                                               num_classes=num_classes, quantize=cfg.quantize,
                                               dtype=cfg.dtype)
        self.ids: list[str] = []
        self.acts: dict[tuple[str, str], list] = {}
        self.labels: list[np.ndarray] = []
        self.dims: list[int] = []
        self.skipped: list[tuple[str, str]] = []
        self.written = 0

    def append(self, ids: Sequence[str], acts: Mapping[tuple[str, str], Any],
               labels: np.ndarray | None = None) -> None:
        self.ids += list(ids)
        for key, value in acts.items():
            self.acts.setdefault(key, []).append(value)
        if labels is not None:
            self.labels.append(np.asarray(labels))
        while len(self.ids) >= BLOCK:
            self._encode(BLOCK)

    def skip(self, image_id: str, reason: str) -> None:
        self.skipped.append((image_id, reason))  # recorded after the last rows, at commit

    def _take(self, n: int):
        """The first ``n`` buffered rows as float32 tensors on the device (as a shard read
        gives them: float16 widened exactly), the rest kept."""
        acts = {}
        for key, parts in self.acts.items():
            if key[0] == "pyramid":  # parts: [per scale list] per append
                scales = [np.concatenate([p[s] for p in parts]) for s in range(len(parts[0]))]
                acts[key] = [torch.from_numpy(x[:n]).float().to(self.device) for x in scales]
                self.acts[key] = [[x[n:] for x in scales]]
            else:
                whole = np.concatenate(parts)
                acts[key] = torch.from_numpy(whole[:n]).float().to(self.device)
                self.acts[key] = [whole[n:]]
        ids, self.ids = self.ids[:n], self.ids[n:]
        labels = None
        if self.labels:
            whole = np.concatenate(self.labels)
            labels, self.labels = whole[:n], [whole[n:]]
        return ids, acts, labels

    def _encode(self, n: int) -> None:
        interrupt.check()
        ids, acts, labels = self._take(n)
        blocks = self.plan.encode_blocks(acts)
        self.dims = [b.shape[1] for b in blocks]
        vec = self.plan.join(blocks)
        # a finite sum is proof enough (one reading pass); else look at every value
        if not torch.isfinite(vec.sum()) and not torch.isfinite(vec).all():
            raise InputError(f"non-finite encodings for images of {self.source}")
        if self.written == 0 and self.folder is not None:  # is there room for the shard?
            cfg = self.cfg
            itemsize = 1 / 4 if cfg.quantize != "none" else 4 if cfg.dtype == "float32" else 2
            self.folder.require_space(int(self.images * vec.shape[1] * itemsize) + (1 << 20))
        self.writer.append(ids, vec.cpu().numpy(), labels)
        self.written += len(ids)

    def commit(self) -> Path:
        if self.ids:
            self._encode(len(self.ids))
        for image_id, reason in self.skipped:
            self.writer.skip(image_id, reason)
        return self.writer.commit(
            dim=int(sum(self.dims)),
            blocks=[{"method": m.name, "view": v, "dim": d}
                    for (m, v), d in zip(self.plan.blocks, self.dims)])

    def abort(self) -> None:
        self.writer.abort()

def _context(cfg: EncodeConfig, methods: tuple[Method, ...], head: dict,
             device: torch.device) -> Context:
    """The layer of each role and the models the plan's methods need, checked against the
    activations' provenance."""
    roles = {r for m in methods for r in m.reads}
    layers: dict[str, str] = {}
    ctx: dict = {}
    fits = {k: head[k] for k in EXTRACTION_KEYS}
    if "local" in roles:
        pca, pattrs = load_pca(cfg.pca, device)
        require_fit(pattrs, fits, cfg.pca, "fit the PCA on these activations")
        spec = LocalSpec.parse(pattrs["local"])
        if spec.kind != "subarray":
            raise ProvenanceError(f"{cfg.pca} has local={spec}; cross-layer pooling needs a PCA "
                                  "of subarray:MxN features")
        local = pattrs["layer"]
        guide = get_backbone(head["backbone"]).guide_for(local)
        if cfg.layers:
            if cfg.layers[0] != local:
                raise ProvenanceError(f"{cfg.pca} has layer={local!r}, this run needs "
                                      f"layer={cfg.layers[0]!r}; fit a PCA on it (featx fit-pca "
                                      f"--layer {cfg.layers[0]})")
            guide = cfg.layers[1]
        if guide is None:
            bb = get_backbone(head["backbone"])
            why = (f"{bb.name} has no pair of feature maps with related grids (a transformer's "
                   "blocks give token sequences, not maps)") if bb.cross_layer is None else \
                f"{local} is not the local layer of {bb.name}'s default pair {bb.cross_layer}"
            raise InputError(f"no default guidance layer for {local}: {why}; pass featx "
                             f"encode --layers {local},GUIDE with two map layers (the fused "
                             "extract --encode takes the backbone's default pair only)")
        shapes = head["layer_shapes"]
        for layer in (local, guide):
            if layer not in shapes:
                raise InputError(f"the activations hold no layer {layer!r}; they hold "
                                 f"{', '.join(shapes)}")
        c, h, w = shapes[local]
        require_fit(pattrs, {"layer_shape": [c, h, w]}, cfg.pca, f"it was fitted on {local} "
                    "maps of another shape")
        kernel = get_backbone(head["backbone"]).kernels.get(guide)
        if kernel and spec.size != (kernel, kernel):
            log.warning("%s has %s subarrays, but %s's kernel is %dx%d: the local features "
                        "are not what %s computes from (Liu et al. §3.2)", cfg.pca, spec, guide,
                        kernel, kernel, guide)
        layers.update(local=local, guide=guide)
        ctx["grid"] = CrossLayerGrid.of((h, w), tuple(shapes[guide][1:]), spec.size)
        ctx["pca_conv"] = pca.as_conv(c, *spec.size)
    if "fc" in roles:
        layers["fc"] = cfg.fc_layer or ("fc7" if "fc7" in head["layers"] else "pool")
    if "fisher" in roles:
        gmm, gattrs = _pyramid_model(load_gmm, cfg.gmm, device, head, fits,
                                     "the Fisher methods encode")
        layers["fisher"] = gattrs["layer"]
        ctx["gmm"] = gmm
        ctx["pyramid_sizes"] = tuple(head["pyramid_sizes"])
        geometry = (head.get("pyramid_geometry") or {}).get(gattrs["layer"])
        ctx["pyramid_geometry"] = tuple(map(tuple, geometry)) if geometry else None
        ctx["fisher_pca"] = pyramid_pca(head, gattrs, cfg.gmm, cfg.pca, device)
        dim = ctx["fisher_pca"].components_.shape[0] if ctx["fisher_pca"] else gattrs["dim"]
        if gmm.means_.shape[1] != dim:
            raise InputError(f"{cfg.gmm} models {gmm.means_.shape[1]}-d features, the PCA "
                             f"gives {dim}-d; fit the GMM on this PCA")
    if "region" in roles:
        guidance, gattrs = _pyramid_model(load_guidance, cfg.guidance, device, head, fits,
                                          "scheme 2 encodes")
        layers["region"] = gattrs["layer"]
        check_guidance_scales(head, gattrs, cfg.guidance)
        ctx.update(guidance=guidance, guidance_scales=tuple(gattrs["scales"]),
                   region_pca=pyramid_pca(head, gattrs, cfg.guidance, cfg.pca, device))
        if guidance.weight.shape[1] != gattrs["dim"]:
            raise InputError(f"{cfg.guidance} is inconsistent: {guidance.weight.shape[1]} input "
                             f"channels for {gattrs['dim']}-d features; fit it again")
    return Context(layers=layers, **ctx)


def _pyramid_model(load, path: str, device: torch.device, head: dict, fits: dict, who: str):
    """A model fitted on pyramid vectors (a GMM, a guidance), checked against these
    activations: the same extraction, and a pyramid of its layer present."""
    model, attrs = load(path, device)
    require_fit(attrs, {**fits, "view": "pyramid"}, path,
                f"{who} pyramid vectors of these activations")
    if attrs["layer"] not in head["layers"] or not head.get("pyramid_sizes"):
        raise InputError(f"the activations hold no pyramid of {attrs['layer']}; extract "
                         f"with --views pyramid --layers {attrs['layer']}")
    return model, attrs
