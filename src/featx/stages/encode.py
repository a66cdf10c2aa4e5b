"""The encode stage: activation shards -> encoding shards (one per activation shard).

What each ``--method`` computes is in :mod:`featx.methods`. Local-feature methods run on each
view in ``views``; the inputs of a view are pooled together (``blocks`` = CL-45F) and several
views are concatenated (``whole,blocks`` = CL-45C). Several methods are concatenated too
(e.g. ``cross-layer,global``). Each block is normalised (signed square root, L2) before
joining, and the joined vector has unit norm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from featx import interrupt
from featx.backbones import get_backbone
from featx.digest import file_digest
from featx.encoders import CrossLayerGrid, LocalSpec
from featx.errors import InputError, ProvenanceError
from featx.params import Options, param, validate
from featx.io import EXTRACTION_KEYS, EncodingWriter, load_gmm, load_guidance, load_pca
from featx.io import MODEL_KINDS, check_guidance_scales, pyramid_pca, read_header, require_fit, shard_paths
from featx.io.output import OutputFolder
from featx.io.shards import ActivationShard
from featx.methods import GRID_VIEWS, Context, EncodePlan, Method, get_methods
from featx.stages import Output, Stage

log = logging.getLogger(__name__)

_BLOCK = 32  # images per read / compute step
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

    methods: Sequence[str] = ("cross-layer",)
    views: Sequence[str] = ("whole",)
    pca: str | None = None
    gmm: str | None = None
    guidance: str | None = None
    layers: Sequence[str] | None = None
    fc_layer: str | None = None
    power_norm: bool | None = None  # None: each method's own (featx.methods)
    l2: bool = True
    quantize: str = param("none", Options(QUANTIZE))
    dtype: str = param("float32", Options(DTYPES))
    device: str = "auto"
    overwrite: bool = False
    command: str = ""

    @property
    def method_names(self) -> tuple[str, ...]:
        """The methods run: with ``guidance``, cross-layer pooling is scheme 2."""
        swap = {"cross-layer": "cross-layer-guided"} if self.guidance else {}
        return tuple(swap.get(n, n) for n in self.methods)

    def __post_init__(self) -> None:
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
        validate(self)
        if self.layers is not None and len(self.layers) != 2:
            raise InputError("--layers takes two layers: LOCAL,GUIDE (t and t+1)")


class Encode(Stage):
    """Encode every activation shard of the inputs into the output folder. Output shard i has
    the name of input shard i. A rerun keeps complete outputs made with the same settings
    (resume); others are refused unless ``overwrite``. Under torchrun, rank r encodes input
    shards r, r + world, ..."""

    name, distributed = "encode", True

    def plan(self, inputs: Sequence[str]) -> SimpleNamespace | None:
        cfg, device = self.cfg, self.device
        every = shard_paths(inputs)
        paths = every[self.rank::self.world]
        if not paths:
            return None
        heads = [read_header(p) for p in paths]
        for p, h in zip(paths, heads):
            if h.get("kind") != "activations":
                raise InputError(f"{p} holds {h.get('kind')!r}, not activations (featx extract)")
            require_fit(h, {k: heads[0][k] for k in EXTRACTION_KEYS}, str(p),
                        "encode shards of one extraction")
        if len({p.name for p in every}) != len(every):
            raise InputError("input shards share file names; encode one extraction folder at a "
                             "time")
        methods = get_methods(cfg.method_names)
        plan = EncodePlan(methods, tuple(cfg.views), _context(cfg, methods, heads[0], device),
                          cfg.power_norm, cfg.l2)
        return SimpleNamespace(every=every, paths=paths, heads=heads, plan=plan)

    def inputs_of(self, p: SimpleNamespace | None) -> list[Path]:
        models = [Path(m) for m in (self.cfg.pca, self.cfg.gmm, self.cfg.guidance) if m]
        return [*(p.every if p else []), *models]

    def owned(self, p: SimpleNamespace | None, name: str) -> bool:
        # output i has input i's name; leftovers of an older run are rank 0's to remove
        if p is None:
            return False
        return name in {q.name for q in p.paths} or (self.rank == 0 and
                                                     name not in {q.name for q in p.every})

    def work(self, p: SimpleNamespace | None, output: Output) -> Iterator[Path]:
        if p is None:  # more ranks than shards: nothing is this rank's
            return
        cfg, device, plan = self.cfg, self.device, p.plan
        layers = plan.context.layers
        signature = {
            "kind": "encodings", "methods": list(cfg.method_names), "views": list(cfg.views),
            "power_norm": cfg.power_norm, "normalisation": plan.normalisation(), "l2": cfg.l2,
            "quantize": cfg.quantize,
            "pca_sha256": file_digest(cfg.pca) if cfg.pca else "",
            "gmm_sha256": file_digest(cfg.gmm) if cfg.gmm else "",
            "guidance_sha256": file_digest(cfg.guidance) if cfg.guidance else "",
        }
        attrs = output.provenance(
            **signature, pca=str(Path(cfg.pca).resolve()) if cfg.pca else "",
            local_layer=layers.get("local", ""), guide_layer=layers.get("guide", ""),
            fc_layer=layers.get("fc", ""), dtype=cfg.dtype)
        advance = output.start("encode", sum(len(h["ids"]) for h in p.heads))
        folder = output.folder
        with torch.inference_mode():
            for path, head in zip(p.paths, p.heads):
                target = folder.path / path.name
                if output.existing(target, signature, head["ids"] + head["skipped_ids"]) is None:
                    _encode_one(path, target, plan, cfg, attrs, device, folder, advance)
                else:
                    advance(len(head["ids"]))
                yield folder.keep(target)


def run(inputs: Sequence[str], out: str | Path, cfg: EncodeConfig, **kw) -> list[Path]:
    """:meth:`Encode.run`: encodings of ``inputs``' activation shards into ``out``."""
    return Encode(cfg).run(inputs, out, **kw)


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
            raise InputError(f"no default guidance layer for {local}: {why}; pass "
                             f"--layers {local},GUIDE with two map layers")
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


def _encode_one(path: Path, target: Path, plan: EncodePlan, cfg: EncodeConfig, attrs: dict,
                device: torch.device, folder: OutputFolder, advance) -> Path:
    with ActivationShard(path) as shard:
        head = shard.attrs
        classes = head.get("classes", [])
        with EncodingWriter(target, {**attrs, **{k: head[k] for k in EXTRACTION_KEYS},
                                     "classes": classes, "split": head.get("split", ""),
                                     "source": str(path)},
                            label_kind=shard.label_kind, num_classes=len(classes),
                            quantize=cfg.quantize, dtype=cfg.dtype) as writer:
            dims: list[int] = []
            for start_ in range(0, len(shard.ids), _BLOCK):
                interrupt.check()
                rows = slice(start_, start_ + _BLOCK)
                acts = {}
                for view, layer in plan.reads():
                    if view == "pyramid":
                        acts[(view, layer)] = [torch.from_numpy(x).to(device)
                                               for x in shard.pyramid(layer, rows)]
                    else:
                        acts[(view, layer)] = torch.from_numpy(shard.read(view, layer, rows)).to(device)
                blocks = plan.encode_blocks(acts)
                dims = [b.shape[1] for b in blocks]
                vec = plan.join(blocks)
                # a finite sum is proof enough (one reading pass); else look at every value
                if not torch.isfinite(vec.sum()) and not torch.isfinite(vec).all():
                    raise InputError(f"non-finite encodings for images of {path}")
                if start_ == 0:  # the width is known now: is there room for the shard?
                    itemsize = 1 / 4 if cfg.quantize != "none" else 4 if cfg.dtype == "float32" \
                        else 2
                    folder.require_space(int(len(shard.ids) * vec.shape[1] * itemsize) + (1 << 20))
                writer.append(shard.ids[rows], vec.cpu().numpy(), shard.labels(rows))
                advance(len(shard.ids[rows]))
            for sid, reason in shard.skipped:
                writer.skip(sid, reason)
            return writer.commit(
                dim=int(sum(dims)),
                blocks=[{"method": m.name, "view": v, "dim": d}
                        for (m, v), d in zip(plan.blocks, dims)])
