"""An extraction's run: images -> decoded views (the loader) -> the engine -> a sink per shard.

:func:`plan` resolves an :class:`~featx.configs.ExtractConfig` over an image source into an
:class:`ExtractionPlan` (layers, views, shapes, the signature its shards record, the shards'
images and their digests) without loading a model. :func:`run` drives it: it keeps the
shards a sink has completed before (resume), decodes the rest in DataLoader workers,
overlapped with the forward passes of the :class:`featx.inference.Engine`, and hands each
batch's arrays to the sink of its shard. A :class:`Sinks` says what a shard becomes: the
activation shards of ``featx extract`` (:class:`ActivationSinks`), the encodings of the fused
``extract --encode``, or ``featx predict``'s scores -- the last two are built in the stages
that need them, on :class:`featx.encoding.ShardEncoder`.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from featx import interrupt
from featx.backbones import Backbone, dense_shapes, get_backbone, layer_shapes, load_model
from featx.backbones.features import receptive_fields
from featx.configs import MAX_BATCH, ExtractConfig
from featx.device import release_free_host_memory
from featx.digest import file_digest
from featx.errors import FeatxError, ImageDecodeError, InputError, NonFiniteError
from featx.errors import OutputExistsError
from featx.images import ImageSource, ViewSpec, decode, render_pyramid
from featx.inference import Engine, compute_precision
from featx.io import ActivationWriter, load_pca, require_fit, shard_name

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "float32": torch.float32}  # featx.configs.EXTRACT_DTYPES


@dataclass(frozen=True)
class ExtractionPlan:
    """What an extraction computes, resolved before any model loads: the backbone, layers and
    views, their shapes, the pyramid's dense layers, the shards' images (``chunks``) with the
    digests of their files, and the ``signature`` every shard of it records."""

    source: ImageSource
    bb: Backbone
    layers: tuple[str, ...]
    views: tuple[ViewSpec, ...]
    size: int
    shapes: dict[str, tuple]
    grid_views: tuple[ViewSpec, ...]
    pyramid: ViewSpec | None
    pyr_fc: tuple[str, ...]
    pyr_conv: tuple[str, ...]
    pyr_shapes: tuple[dict, ...]
    project: tuple | None  # (PCA, digest) of --project
    signature: dict[str, Any]
    chunks: tuple[list, ...]
    digests: tuple[str, ...]
    started: float  # an image modified after this changed during the run
    per_image_bytes: int

    @property
    def labelled(self) -> str | None:
        return self.source.label_kind

    @property
    def pyr_layers(self) -> tuple[str, ...]:
        return self.layers if self.pyramid else ()

    def header(self, cfg: ExtractConfig, weights_desc: str) -> dict[str, Any]:
        """What an activation shard of this extraction records (before its provenance)."""
        source, bb, pyramid = self.source, self.bb, self.pyramid
        return dict(
            **self.signature, weights=weights_desc, weights_arg=cfg.weights,
            seed=cfg.seed, classes=list(source.classes),
            split=source.split,
            source=source.description, image_root=_common_root(source),
            layer_shapes={k: list(self.shapes[k]) for k in self.layers},
            pyramid_shapes=[{k: list(v) for k, v in d.items()} for d in self.pyr_shapes],
            # per layer and scale, (centre of row 0, stride) in pixels: where each dense
            # vector's receptive field is (MPP + SP's regions, the maps' windows)
            pyramid_geometry={x: [list(g) for g in
                                  receptive_fields(bb, x, pyramid.sizes(self.size))]
                              for x in self.pyr_layers} if pyramid else {},
        )


def plan(cfg: ExtractConfig, source: ImageSource, device: torch.device) -> ExtractionPlan:
    """The plan of ``cfg`` over ``source`` on ``device`` (checked; no model loaded)."""
    if cfg.sample:
        source = source.sample(cfg.sample, cfg.seed)
    bb = get_backbone(cfg.backbone)
    layers = tuple(bb.check_layers(list(cfg.layers or bb.default_layers())))
    views = _parse_views(cfg.views)
    size = cfg.input_size or bb.input_size
    shapes = layer_shapes(bb, size)

    grid_views = tuple(v for v in views if v.kind != "pyramid")
    pyramid = next((v for v in views if v.kind == "pyramid"), None)
    # the pyramid stores every requested layer densely: FC layers run as convolutions,
    # conv layers as they are (on a bigger input they give bigger maps)
    fc_names = set(bb.fc_conv[1]) if bb.fc_conv else set()
    pyr_layers = list(layers) if pyramid else []
    pyr_fc = [x for x in pyr_layers if x in fc_names]
    pyr_conv = [x for x in pyr_layers if x not in fc_names]
    flat = [x for x in pyr_conv if len(shapes[x]) != 3]
    if flat:
        raise InputError(f"the pyramid view needs conv layers or {bb.name}'s densely computable "
                         f"FC layers ({', '.join(sorted(fc_names)) or 'none'}); {flat[0]} is "
                         "neither")
    if cfg.project and not pyramid:
        raise InputError("--project applies to the pyramid view; add --views pyramid")
    pyr_shapes = []
    if pyramid:
        for s_size, fc in zip(pyramid.sizes(size),
                              dense_shapes(bb, pyr_fc, pyramid.sizes(size)) if pyr_fc
                              else [{}] * pyramid.scales):
            conv = layer_shapes(bb, s_size)
            pyr_shapes.append({x: fc[x] if x in fc else (conv[x][1] * conv[x][2], conv[x][0])
                               for x in pyr_layers})
    project = _load_projection(cfg.project, bb.name, pyr_layers, device) if cfg.project else None
    signature = {
        "kind": "activations", "backbone": bb.name, "layers": list(layers),
        "views": [str(v) for v in views], "input_size": size, "dtype": cfg.dtype,
        "shard_size": cfg.shard_size, "mean": list(bb.mean), "std": list(bb.std), "bgr": bb.bgr,
        "jitter_size": bb.jitter_size, "interpolation": bb.interpolation,
        "pyramid_sizes": pyramid.sizes(size) if pyramid else [],
        "projected": project[1] if project else "",
        "sample": [cfg.sample, cfg.seed] if cfg.sample else [],
        # the engine's precision: a resume never mixes a GPU's float16 with float32
        "compute": compute_precision(device),
    }
    chunks = tuple(source.records[i:i + cfg.shard_size]
                   for i in range(0, len(source.records), cfg.shard_size))
    started = time.time()
    digests = tuple(_inputs_digest(chunk) for chunk in chunks)
    per_image_bytes = _bytes_per_image(shapes, layers, grid_views, pyr_shapes, cfg.dtype)
    return ExtractionPlan(source, bb, layers, tuple(views), size, shapes, grid_views, pyramid,
                          tuple(pyr_fc), tuple(pyr_conv), tuple(pyr_shapes), project,
                          signature, chunks, digests, started, per_image_bytes)


# --- sinks -------------------------------------------------------------------------------------

class Sink(Protocol):
    """What one shard's arrays go to: ``append`` takes a batch (ids, grid
    ``{(view, layer): (b, V, ...)}``, pyramid ``{(layer, scale): (b, n_s, C)}``, labels, image
    paths), ``skip`` an image that could not be used, ``commit`` makes the shard and returns its
    path, ``abort`` leaves nothing behind. ``index``: the shard's number."""

    index: int

    def append(self, ids, grid, pyr, labels, paths=None) -> None: ...
    def skip(self, image_id: str, reason: str) -> None: ...
    def commit(self) -> Path: ...
    def abort(self) -> None: ...


class Sinks(Protocol):
    """A kind of output shard: the ``signature`` a shard kept from an earlier run must have,
    and a new :class:`Sink` for shard ``k`` once the weights are loaded (their description is
    what the shard records)."""

    signature: dict[str, Any]

    def open(self, k: int, weights_desc: str) -> Sink: ...


class ActivationSinks:
    """``featx extract``'s shards: the activations as stored (:class:`ActivationWriter`)."""

    def __init__(self, p: ExtractionPlan, cfg: ExtractConfig, output):
        self.p, self.cfg, self.output = p, cfg, output
        self.signature = {**p.signature, "weights_arg": cfg.weights}
        self.view_attrs = {v.kind: {"view": str(v), "count": v.count()} for v in p.grid_views}
        if p.pyramid:
            self.view_attrs["pyramid"] = {"view": str(p.pyramid), "sizes": p.pyramid.sizes(p.size)}

    def open(self, k: int, weights_desc: str) -> ActivationWriter:
        p = self.p
        self.output.folder.require_space(p.per_image_bytes * len(p.chunks[k]) + (1 << 20))
        attrs = self.output.provenance(**p.header(self.cfg, weights_desc))
        return ActivationWriter(self.output.folder.path / shard_name(k),
                                {**attrs, "shard_index": k, "inputs_digest": p.digests[k]},
                                label_kind=p.labelled, num_classes=len(p.source.classes),
                                view_attrs=self.view_attrs, index=k)


class EncodedSink:
    """A sink whose arrays an encoder (:class:`featx.encoding.ShardEncoder`) takes: the arrays
    its plan reads, as the encode stage reads them from an activation shard."""

    def __init__(self, encoder, index: int, reads):
        self.encoder, self.index, self.reads = encoder, index, reads

    def append(self, ids, grid, pyr, labels, paths=None) -> None:
        acts = {}
        for view, layer in self.reads:
            if view == "pyramid":
                acts[(view, layer)] = [pyr[(layer, s)] for s in
                                       range(sum(1 for x, _ in pyr if x == layer))]
            else:
                acts[(view, layer)] = grid[(view, layer)]
        self.encoder.append(ids, acts, labels)

    def skip(self, image_id: str, reason: str) -> None:
        self.encoder.skip(image_id, reason)

    def commit(self) -> Path:
        return self.encoder.commit()

    def abort(self) -> None:
        self.encoder.abort()


# --- the run -----------------------------------------------------------------------------------

def run(p: ExtractionPlan, cfg: ExtractConfig, device: torch.device, output, sinks: Sinks, *,
        rank: int = 0, world: int = 1, loaded: tuple | None = None) -> Iterator[Path]:
    """Extract ``p``'s shards of this rank (r, r + world, ...) into ``sinks``, yielding each
    shard's path in shard order: a shard an earlier run completed with the same signature and
    images is kept. ``loaded``: the (model, weights description), when the caller loaded it
    already."""
    chunks, digests = p.chunks, p.digests
    folder = output.folder
    out = folder.path
    mine = [k for k in range(len(chunks)) if k % world == rank]

    # which shards exist already (resume), before any weights are loaded
    todo, done = [], {}
    for k in mine:
        path = out / shard_name(k)
        head = output.existing(path, sinks.signature, [r.id for r in chunks[k]])
        if head is not None:
            if head.get("inputs_digest", digests[k]) != digests[k]:
                raise OutputExistsError(
                    f"existing {path} was extracted from images that have changed since: "
                    f"{_changed(chunks[k], path.stat().st_mtime)}; pass --overwrite to "
                    "extract them again")
            done[k] = folder.keep(path)
        else:
            todo.append(k)
    if done:
        log.info("resuming: %d of %d shards already complete in %s", len(done), len(mine), out)
    if not todo:
        yield from (done[k] for k in mine)
        return

    bb, size, grid_views, pyramid = p.bb, p.size, p.grid_views, p.pyramid
    records = [(k, r) for k in todo for r in chunks[k]]
    # a batch is bounded by pixels: a pyramid image counts as the backbone-sized inputs its
    # scales add up to (127 for 7 scales of sqrt(2)), so the decoded pyramids in flight and
    # the largest scale's activations stay within a few hundred MB
    pyr_inputs = math.ceil(sum(s * s for s in pyramid.sizes(size)) / size ** 2) \
        if pyramid else 0
    per_image = sum(v.count() for v in grid_views) + pyr_inputs or 1
    workers = (os.cpu_count() or 1) if cfg.workers is None else cfg.workers
    loader = DataLoader(
        _ViewDataset([r for _, r in records], list(p.views), size, bb.jitter_size,
                     bb.interpolation),
        batch_size=max(1, min(cfg.batch_size, MAX_BATCH) // per_image), num_workers=workers,
        collate_fn=_collate, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, worker_init_fn=_worker_init if workers else None,
    )
    if workers:
        release_free_host_memory()  # else shared copy-on-write with the forked workers
    batches = iter(loader)  # the workers start decoding while the model loads
    model, weights_desc = loaded or load_model(bb, cfg.weights, cfg.seed)
    engine = Engine(model, bb, device, layers=p.layers if grid_views else (),
                    pyramid_fc=p.pyr_fc, pyramid_conv=p.pyr_conv,
                    store_dtype=DTYPES[cfg.dtype], compute=p.signature["compute"],
                    project=p.project[0] if p.project else None)
    splits = np.cumsum([0] + [v.count() for v in grid_views])

    def store(good: list, what: str, t: torch.Tensor) -> np.ndarray:
        """A (B, ...) activation checked for NaN/Inf, as a numpy array in the storage dtype."""
        t = t.to(DTYPES[cfg.dtype])
        bad = nonfinite_rows(t)
        if bad.any():
            ids = [records[good[j]][1].id for j in bad.nonzero()[:, 0].tolist()]
            hint = "; try --dtype float32" if cfg.dtype == "float16" else ""
            raise NonFiniteError(f"non-finite {what} activations ({cfg.dtype}) "
                                 f"for {', '.join(ids[:5])}{hint}")
        return t.contiguous().cpu().numpy()

    def forward(good: list, grid_x, pyr_x) -> tuple[dict, dict]:
        """The decoded images ``good`` (their grid views and pyramid scales stacked by
        :func:`_collate`): grid {(view, layer): (B, V, ...)} and pyramid
        {(layer, scale): (B, vectors, C)} arrays in the storage dtype."""
        grid: dict[tuple[str, str], np.ndarray] = {}
        pyr: dict[tuple[str, int], np.ndarray] = {}
        if grid_views:
            for name, t in engine.grid(grid_x).items():
                t = t.reshape(len(good), per_image, *t.shape[1:])
                for n, v in enumerate(grid_views):
                    grid[(v.kind, name)] = store(good, name, t[:, splits[n]:splits[n + 1]])
        if pyramid:
            for s in range(pyramid.scales):  # one forward pass per scale
                for name, vecs in engine.pyramid(pyr_x[s]).items():
                    pyr[(name, s)] = store(good, name, vecs)
        return grid, pyr

    def unchanged(w: Sink) -> Sink:
        """``w``, once its shard's images are as they were when the run planned: an
        image replaced while the run read it may be either version, so that shard is not
        written (the run stops; a rerun extracts it again)."""
        if _inputs_digest(chunks[w.index]) != digests[w.index]:
            raise InputError(f"{_changed(chunks[w.index], p.started)} while this run "
                             f"extracted it; {shard_name(w.index)} was not written (the "
                             "complete shards are kept): rerun to extract it again")
        return w

    writer: Sink | None = None
    pending = iter(mine)  # shard order, so resumed shards are yielded in their place
    advance = output.start(f"{output.stage.name} {bb.name}", len(records))
    try:
        with torch.inference_mode():
            for batch, grid_x, pyr_x in batches:
                interrupt.check()
                for i, err in batch:
                    if err is None:
                        continue
                    if not cfg.skip_bad:
                        raise ImageDecodeError(f"{err} (pass --skip-bad to skip such images)")
                    log.warning("skipped: %s", err)
                good = [i for i, err in batch if err is None]
                grid, pyr = forward(good, grid_x, pyr_x) if good else ({}, {})
                # a batch can straddle shards: write it as runs of one shard each
                rows = [(records[i][0], j) for j, i in enumerate(good)]
                for k in sorted({records[i][0] for i, _ in batch}):
                    if writer is None or writer.index != k:
                        if writer is not None:
                            path, writer = folder.keep(unchanged(writer).commit()), None
                            yield path
                        for j in pending:
                            if j == k:
                                break
                            yield done[j]
                        writer = sinks.open(k, weights_desc)
                    for i, err in batch:
                        if err is not None and records[i][0] == k:
                            writer.skip(records[i][1].id, err)
                    sel = [j for kk, j in rows if kk == k]
                    if not sel:
                        continue
                    recs = [records[good[j]][1] for j in sel]
                    labels = np.asarray([r.labels for r in recs]) if p.labelled else None
                    writer.append([r.id for r in recs], {n: a[sel] for n, a in grid.items()},
                                  {n: a[sel] for n, a in pyr.items()}, labels,
                                  paths=[os.path.abspath(r.path) for r in recs])
                advance(len(batch))
        if writer is not None:
            path, writer = folder.keep(unchanged(writer).commit()), None
            yield path
        yield from (done[j] for j in pending)
    finally:
        if writer is not None:
            writer.abort()


# --- the loader ---------------------------------------------------------------------------------

class _ViewDataset(Dataset):
    """Decodes image ``i`` and renders its views; a decode failure is returned, not raised."""

    def __init__(self, records: list, views: list[ViewSpec], size: int, jitter_size: int,
                 mode: str):
        self.paths = [r.path for r in records]
        self.boxes = [r.box for r in records]
        self.size, self.jitter, self.mode = size, jitter_size, mode
        self.views = [v for v in views if v.kind != "pyramid"]
        self.pyramid = next((v.sizes(size) for v in views if v.kind == "pyramid"), None)
        w = max(v.min_decode_size(size, jitter_size)[0] for v in views)
        h = max(v.min_decode_size(size, jitter_size)[1] for v in views)
        self.min_size = (w, h)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = decode(self.paths[i], self.min_size, self.boxes[i])
            grid = (torch.cat([v.render(img, self.size, self.jitter, self.mode) for v in self.views])
                    if self.views else None)
        except FeatxError as exc:  # undecodable, or too small for a view: a bad image
            message = str(exc) if isinstance(exc, ImageDecodeError) else \
                f"cannot use image {self.paths[i]}: {exc}"
            return i, None, message
        pyramid = render_pyramid(img, self.pyramid, self.mode) if self.pyramid else None
        return i, (grid, pyramid), None


def _collate(items: list) -> tuple[list, torch.Tensor | None, list | None]:
    """A batch as ([(index, error)], grid views, pyramid scales): the good images' views are
    stacked here, in the worker, so one tensor a batch (not one an image) crosses to the main
    process, where each costs a file-descriptor handshake."""
    good = [x for _, x, err in items if err is None]
    grid = _shared_cat([x[0] for x in good]) if good and good[0][0] is not None else None
    pyr = ([_shared_cat([x[1][s][None] for x in good]) for s in range(len(good[0][1]))]
           if good and good[0][1] is not None else None)
    return [(i, err) for i, _, err in items], grid, pyr


def _shared_cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)``; in a DataLoader worker written straight into shared memory (as
    torch's default_collate does), not copied there again when the batch is sent."""
    if get_worker_info() is None:
        return torch.cat(parts)
    shape = (sum(p.shape[0] for p in parts), *parts[0].shape[1:])
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * parts[0].element_size())
    return torch.cat(parts, out=torch.empty(0, dtype=parts[0].dtype).set_(storage, 0, shape))


def _worker_init(worker_id: int) -> None:
    """Decode at the lowest CPU priority: on a machine whose cores the forward pass fills, the
    decoders then run in its gaps and while it waits, instead of stalling its parallel loops.
    On Linux a worker also dies with its parent (kill -9 of featx leaves no decoder running)."""
    os.nice(19)
    # a terminal's Ctrl-C reaches the workers too: the main process stops them (it waits for
    # their batches no more); SIGTERM kills one at once, as before featx's handler was inherited
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- helpers ------------------------------------------------------------------------------------

def nonfinite_rows(t: torch.Tensor) -> torch.Tensor:
    """Which rows (first dimension) of a float16 or float32 ``t`` hold a NaN or an infinity.

    A row's sum is finite exactly when all its values are, if the sum cannot overflow: float16
    values summed in float32 and float32 values in float64 cannot. One reading pass, about
    three times faster than ``isfinite`` on float16 (which writes a mask and reads it again).
    """
    acc = torch.float64 if t.dtype == torch.float32 else torch.float32
    return ~torch.isfinite(t.sum(dim=tuple(range(1, t.dim())), dtype=acc))


def _parse_views(views: Sequence[str]) -> list[ViewSpec]:
    specs = [ViewSpec.parse(v) for v in views]
    kinds = [s.kind for s in specs]
    if not specs or len(set(kinds)) != len(kinds):
        raise InputError(f"views must be distinct and non-empty, got {', '.join(views) or 'none'}")
    return specs


def _common_root(source: ImageSource) -> str:
    """The folder every image of the source lies under (featx maps --images re-roots it)."""
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(r.path))
                                   for r in source.records])
    except ValueError:  # different drives
        return ""


def _load_projection(path: str, backbone: str, layers: list[str], device: torch.device):
    """(PCA, digest) of a PCA fitted on the dense pyramid vectors of the one layer in ``layers``."""
    if len(layers) != 1:
        raise InputError(f"--project takes a PCA of one layer; this run extracts "
                         f"{', '.join(layers)}")
    pca, attrs = load_pca(path, device)
    require_fit(attrs, {"backbone": backbone, "view": "pyramid", "local": "dense",
                        "layer": layers[0], "whiten": False}, f"--project {path}",
                f"fit it with featx fit-pca --view pyramid --local dense --layer {layers[0]}")
    return pca, file_digest(path)


def _changed(records, since: float) -> str:
    """The images of ``records`` modified after ``since`` (a time stamp), said with when:
    "imgs/a/1.png was modified at 2026-12-08 00:20:11 (and 2 more)"; the size or time of
    an image in general when none is newer."""
    newer = []
    for r in records:
        try:
            mtime = os.stat(r.path).st_mtime
        except OSError:
            newer.append((float("inf"), f"{r.path} is gone"))
            continue
        if mtime > since:
            when = datetime.datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M:%S")
            newer.append((mtime, f"{r.path} was modified at {when}"))
    if not newer:
        return "an image's size or modification time differs from when it was extracted"
    newer.sort(key=lambda t: t[0])
    more = f" (and {len(newer) - 1} more)" if len(newer) > 1 else ""
    return newer[0][1] + more


def _inputs_digest(records) -> str:
    """What the images of a shard were when extracted: a digest of each one's id, size and
    modification time (-1 for a missing file), so a rerun notices changed images."""
    h = hashlib.sha256()
    for r in records:
        try:
            st = os.stat(r.path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (-1, -1)
        h.update(f"{r.id}\0{stamp[0]}\0{stamp[1]}\n".encode())
    return h.hexdigest()[:16]


def _bytes_per_image(shapes, layers, grid_views, pyr_shapes, dtype: str) -> int:
    """Stored bytes of one image's activations (a shard's size before it is written)."""
    item = DTYPES[dtype].itemsize
    grid = sum(math.prod(shapes[x]) for x in layers) * sum(v.count() for v in grid_views)
    pyr = sum(math.prod(shape) for scale in pyr_shapes for shape in scale.values())
    return (grid + pyr) * item
