"""The extract stage: run a backbone over the views of each image and write activation shards.

Decoding and view rendering run in DataLoader workers, overlapped with the forward passes; all
views of a batch of images go through the network in one forward pass that stops at the last
requested layer. Shards are written atomically and a rerun resumes: a shard whose file already
holds the same images under the same settings is kept and not recomputed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import featx
from featx.backbones import ActivationExtractor, DenseFC, dense_shapes, get_backbone
from featx.backbones import layer_shapes
from featx.backbones import load_model
from featx.errors import ImageDecodeError, InputError, NonFiniteError, OutputExistsError
from featx.errors import ProvenanceError
from featx.images import ImageSource, ViewSpec, decode, normalize, render_pyramid
from featx.runtime import progress_bar, rank_and_world, resolve_device
from featx.shards import ShardWriter, check_provenance, prepare_output, read_shard_header
from featx.shards import shard_name

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class ExtractConfig:
    """Settings of one extraction; ``batch_size`` counts CNN inputs (views), not images."""

    backbone: str = "alexnet"
    layers: Sequence[str] = ("conv4", "conv5")
    views: Sequence[str] = ("whole",)
    weights: str = "imagenet"
    input_size: int | None = None
    batch_size: int = 64
    device: str = "auto"
    workers: int | None = None
    shard_size: int = 1000
    dtype: str = "float16"
    seed: int = 0
    skip_bad: bool = False
    overwrite: bool = False
    show_progress: bool = True
    command: str = ""
    extra_attrs: dict = field(default_factory=dict)
    project: str | None = None  # PCA applied to the pyramid's dense vectors before storage


class _ViewDataset(Dataset):
    """Decodes image ``i`` and renders its views; a decode failure is returned, not raised."""

    def __init__(self, records: list, views: list[ViewSpec], size: int, jitter_size: int):
        self.paths = [r.path for r in records]
        self.boxes = [r.box for r in records]
        self.size, self.jitter = size, jitter_size
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
        except ImageDecodeError as exc:
            return i, None, str(exc)
        grid = (torch.cat([v.render(img, self.size, self.jitter) for v in self.views])
                if self.views else None)
        return i, (grid, render_pyramid(img, self.pyramid) if self.pyramid else None), None


def _as_list(batch):
    return batch


def _parse_views(views: Sequence[str]) -> list[ViewSpec]:
    specs = [ViewSpec.parse(v) for v in views]
    kinds = [s.kind for s in specs]
    if not specs or len(set(kinds)) != len(kinds):
        raise InputError(f"views must be distinct and non-empty, got {', '.join(views) or 'none'}")
    return specs


def iter_extract(source: ImageSource, out: str | Path, cfg: ExtractConfig,
                 on_commit: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Extract activations of ``source`` into shards under ``out``; yield each shard's path.

    Shards already present from an earlier run with the same settings and images are yielded
    without recomputation. Under torchrun, rank r handles shards r, r + world, ...
    """
    bb = get_backbone(cfg.backbone)
    layers = bb.check_layers(list(cfg.layers))
    views = _parse_views(cfg.views)
    size = cfg.input_size or bb.input_size
    if cfg.dtype not in DTYPES:
        raise InputError(f"unknown dtype {cfg.dtype!r}; valid: {', '.join(DTYPES)}")
    if cfg.shard_size < 1 or cfg.batch_size < 1:
        raise InputError("--shard-size and --batch-size must be at least 1")
    shapes = layer_shapes(bb, size)

    labels = [r.labels for r in source.records]
    labelled = None
    if all(isinstance(x, tuple) for x in labels):
        labelled = "multi"
    elif all(isinstance(x, int) for x in labels):
        labelled = "single"

    grid_views = [v for v in views if v.kind != "pyramid"]
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
    project = _load_projection(cfg.project, bb.name, pyr_layers) if cfg.project else None
    signature = {
        "kind": "activations", "backbone": bb.name, "layers": list(layers),
        "views": [str(v) for v in views], "input_size": size, "dtype": cfg.dtype,
        "shard_size": cfg.shard_size, "mean": list(bb.mean), "std": list(bb.std), "bgr": bb.bgr,
        "jitter_size": bb.jitter_size,
        "pyramid_sizes": pyramid.sizes(size) if pyramid else [],
        "projected": project[2] if project else "",
    }
    out = prepare_output(out, cfg.overwrite)
    rank, world = rank_and_world()
    chunks = [source.records[i:i + cfg.shard_size]
              for i in range(0, len(source.records), cfg.shard_size)]
    mine = [k for k in range(len(chunks)) if k % world == rank]

    # Decide which shards exist already (resume) before loading any weights.
    todo, done = [], {}
    for k in mine:
        path = out / shard_name(k)
        if not path.exists():
            todo.append(k)
            continue
        head = read_shard_header(path)
        try:
            check_provenance(head, {**signature, "weights_arg": cfg.weights}, f"existing {path}")
        except ProvenanceError as exc:
            raise OutputExistsError(f"{exc}; pass --overwrite to replace it, or use another -o") from None
        if set(head["ids"]) | set(head["skipped_ids"]) != {r.id for r in chunks[k]}:
            raise OutputExistsError(
                f"existing {path} holds other images than this run puts there (did the input "
                "change?); pass --overwrite to replace it, or use another -o")
        done[k] = path
    if done:
        log.info("resuming: %d of %d shards already complete in %s", len(done), len(mine), out)

    if not todo:
        yield from (done[k] for k in mine)
        return

    device = resolve_device(cfg.device)
    model, weights_desc = load_model(bb, cfg.weights, cfg.seed)
    # channels_last is faster for these convolutions on CPU (oneDNN) and on GPU (cuDNN)
    model = model.to(device, memory_format=torch.channels_last)
    extractor = ActivationExtractor(model, bb, layers, DTYPES[cfg.dtype]) if grid_views else None
    dense = DenseFC(model, bb, pyr_fc).to(device, memory_format=torch.channels_last) \
        if pyr_fc else None
    dense_conv = ActivationExtractor(model, bb, pyr_conv) if pyr_conv else None

    attrs = {
        **signature, "weights": weights_desc, "weights_arg": cfg.weights,
        "featx_version": featx.__version__, "command": cfg.command, "seed": cfg.seed,
        "classes": list(source.classes), "split": source.split, "source": source.description,
        "layer_shapes": {k: list(shapes[k]) for k in layers},
        "pyramid_shapes": [{k: list(v) for k, v in d.items()} for d in pyr_shapes],
        **cfg.extra_attrs,
    }
    records = [(k, r) for k in todo for r in chunks[k]]
    per_image = sum(v.count() for v in grid_views) or 1
    workers = (os.cpu_count() or 1) if cfg.workers is None else cfg.workers
    loader = DataLoader(
        _ViewDataset([r for _, r in records], views, size, bb.jitter_size),
        batch_size=max(1, cfg.batch_size // per_image), num_workers=workers,
        collate_fn=_as_list, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, worker_init_fn=_low_priority if workers else None,
    )
    splits = np.cumsum([0] + [v.count() for v in grid_views])
    autocast = torch.autocast("cuda", enabled=device.type == "cuda")

    def store(batch: list, name: str, t: torch.Tensor, acts: dict) -> None:
        """Check a (B, ...) activation for NaN/Inf, then keep it as a numpy array."""
        t = t.to(DTYPES[cfg.dtype])
        bad = ~torch.isfinite(t).flatten(1).all(1)
        if bad.any():
            ids = [records[batch[j][0]][1].id for j in bad.nonzero()[:, 0].tolist()]
            hint = "; try --dtype float32" if cfg.dtype == "float16" else ""
            raise NonFiniteError(f"non-finite {name.split('/')[2]} activations ({cfg.dtype}) "
                                 f"for {', '.join(ids[:5])}{hint}")
        acts[name] = t.contiguous().cpu().numpy()

    def forward(batch: list) -> dict[str, np.ndarray]:
        """{dataset name: (B, ...) array in the storage dtype} for the decoded images of batch."""
        acts: dict[str, np.ndarray] = {}
        if grid_views:
            x = torch.cat([x[0] for _, x, _ in batch]).to(device, non_blocking=True)
            with autocast:
                feats = extractor(normalize(x, bb.mean, bb.std, bb.bgr))
            for name, t in feats.items():
                t = t.reshape(len(batch), per_image, *t.shape[1:])
                for n, v in enumerate(grid_views):
                    store(batch, f"acts/{v.kind}/{name}", t[:, splits[n]:splits[n + 1]], acts)
        if pyramid:
            for s in range(pyramid.scales):  # one forward pass per scale
                x = torch.stack([x[1][s] for _, x, _ in batch]).to(device, non_blocking=True)
                x = normalize(x, bb.mean, bb.std, bb.bgr)
                with autocast:
                    maps = dense(x) if dense is not None else {}
                    if dense_conv is not None:
                        maps.update(dense_conv(x))
                for name, t in maps.items():
                    vecs = t.float().flatten(2).transpose(1, 2)  # (B, h*w, C): dense fc vectors
                    if project is not None:
                        vecs = (vecs - project[0]) @ project[1].T
                    store(batch, f"acts/pyramid/{name}/s{s}", vecs, acts)
        return acts

    def new_writer(k: int) -> ShardWriter:
        w = ShardWriter(out / shard_name(k), {**attrs, "shard_index": k}, labelled=labelled,
                        num_classes=len(source.classes), index=k)
        for v in grid_views:
            w.group_attrs(f"acts/{v.kind}", {"view": str(v), "count": v.count()})
        if pyramid:
            w.group_attrs("acts/pyramid", {"view": str(pyramid), "sizes": pyramid.sizes(size)})
        return w

    writer: ShardWriter | None = None
    pending = iter(mine)  # shard order, so resumed shards are yielded in their place
    progress = progress_bar("img", cfg.show_progress)
    try:
        with progress, torch.inference_mode():
            task = progress.add_task(f"extract {bb.name}", total=len(records))
            for batch in loader:
                for i, _, err in batch:
                    if err is None:
                        continue
                    if not cfg.skip_bad:
                        raise ImageDecodeError(f"{err} (pass --skip-bad to skip such images)")
                    log.warning("skipped: %s", err)
                good = [item for item in batch if item[2] is None]
                acts = forward(good) if good else {}
                # a batch can straddle shards: write it as runs of one shard each
                rows = [(records[i][0], j) for j, (i, _, _) in enumerate(good)]
                for k in sorted({records[i][0] for i, _, _ in batch}):
                    if writer is None or writer.index != k:
                        if writer is not None:
                            path, writer = _commit(writer, on_commit), None
                            yield path
                        for j in pending:
                            if j == k:
                                break
                            yield done[j]
                        writer = new_writer(k)
                    for i, _, err in batch:
                        if err is not None and records[i][0] == k:
                            writer.skip(records[i][1].id, err)
                    sel = [j for kk, j in rows if kk == k]
                    if not sel:
                        continue
                    recs = [records[good[j][0]][1] for j in sel]
                    arrays = {name: a[sel] for name, a in acts.items()}
                    labels = np.asarray([r.labels for r in recs]) if labelled else None
                    writer.append([r.id for r in recs], arrays, labels)
                progress.advance(task, len(batch))
        if writer is not None:
            path, writer = _commit(writer, on_commit), None
            yield path
        yield from (done[j] for j in pending)
    finally:
        if writer is not None:
            writer.abort()


def _load_projection(path: str, backbone: str, layers: list[str]):
    """(mean, components, sha) of a PCA fitted on dense pyramid vectors of ``layers``."""
    from featx.models import file_digest, load_pca

    pca, attrs = load_pca(path)
    if attrs.get("backbone") != backbone or attrs.get("view") != "pyramid" or \
            attrs.get("local") != "dense" or [attrs.get("layer")] != layers:
        raise ProvenanceError(
            f"--project {path} was fitted on {attrs.get('backbone')} {attrs.get('view')} "
            f"{attrs.get('layer')} ({attrs.get('local')}); this run extracts {backbone} pyramid "
            f"{', '.join(layers)} (dense); fit it with featx fit-pca --view pyramid --local dense")
    if pca.whiten:
        raise ProvenanceError(f"--project {path} is whitened; project with an unwhitened PCA")
    return pca.mean_, pca.components_, file_digest(path)


def _low_priority(worker_id: int) -> None:
    """Decode at the lowest CPU priority: on a machine whose cores the forward pass fills, the
    decoders then run in its gaps and while it waits, instead of stalling its parallel loops."""
    os.nice(19)


def _commit(writer: ShardWriter, on_commit: Callable[[Path], None] | None) -> Path:
    path = writer.commit()
    if on_commit is not None:
        on_commit(path)
    return path


def extract_shards(source: ImageSource, out: str | Path, cfg: ExtractConfig) -> list[Path]:
    """Run :func:`iter_extract` to the end and return every shard path, in order."""
    return list(iter_extract(source, out, cfg))
