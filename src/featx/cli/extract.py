"""``featx extract``: activations of a backbone over images, written as HDF5 shards."""

from __future__ import annotations

import click

from featx.cli.options import bars, batch_size_opt, command_line, device_opt, emit, images_arg
from featx.cli.options import constraint_type, model_opt, out_opt, overwrite_opt, seed_opt
from featx.configs import BACKBONES, DATASETS, EncodeConfig, ExtractConfig

D = ExtractConfig  # the defaults live in the config


@click.command()
@images_arg
@out_opt
@click.option("--dataset", type=click.Choice(list(DATASETS)),
              help="Read a benchmark in its standard layout (with labels) instead of INPUTS.")
@click.option("--root", type=click.Path(), help="The dataset's folder (or CSV for folder).")
@click.option("--split", default="", help="The dataset's split: train, val, trainval, test "
              "(folder: the sub-folder; none: read split-named folders as classes).")
@click.option("--sample", type=constraint_type(D, "sample"),
              help="Extract only a stratified sample of this many images (seeded by --seed): "
                   "e.g. the images a PCA is fitted on.")
@click.option("--crop-boxes", is_flag=True, help="cub200, h3d: crop to the bounding boxes.")
@click.option("--backbone", default=D.backbone, show_default=True,
              help=f"{', '.join(BACKBONES)}, or any "
                   "torchvision:NAME / timm:NAME (featx layers --list torchvision|timm).")
@click.option("--weights", default=D.weights, show_default=True,
              help="imagenet, none (random, from --seed) or a state-dict file.")
@click.option("--layers", default=None,
              help="Comma-separated layer aliases (see `featx layers BACKBONE`); "
                   "default: the backbone's cross-layer pair.")
@click.option("--views", default=",".join(D.views), show_default=True,
              help="Comma-separated: whole, blocks[:MxN] (rows x cols, default 2x2), jitter "
                   "(AP10), centre (centre crop), crops[:N] (N x N crops + flips; AP50), "
                   "pyramid (fc6/fc7 run densely over --scales sizes).")
@click.option("--scales", type=click.IntRange(1), default=7, show_default=True,
              help="Scales of the pyramid view, growing by sqrt(2) from the input size.")
@click.option("--project", type=click.Path(exists=True, dir_okay=False),
              help="PCA (fit-pca --view pyramid --local dense) applied to the pyramid's "
                   "vectors before they are stored.")
@click.option("--input-size", type=constraint_type(D, "input_size"),
              help="Default: the backbone's (227/224).")
@batch_size_opt(D)
@device_opt
@click.option("--workers", type=constraint_type(D, "workers"),
              help="Decoding processes (default: the CPUs).")
@click.option("--shard-size", default=D.shard_size, show_default=True,
              type=constraint_type(D, "shard_size"),
              help="Images per shard.")
@click.option("--dtype", type=constraint_type(D, "dtype"), default=D.dtype, show_default=True)
@seed_opt
@click.option("--skip-bad", is_flag=True, help="Skip undecodable images (recorded in the shard).")
@click.option("--encode", "encode_methods", metavar="METHODS",
              help="The fused pass: encode each batch in memory with these methods (as featx "
                   "encode --method) and write encoding shards, no activations.")
@click.option("--encode-views", help="--encode: the views its local-feature methods encode "
                                     "(default: the grid views extracted).")
@model_opt("pca", help="--encode: PCA of the local layer's subarrays (featx fit-pca).")
@model_opt("gmm", help="--encode: GMM of the pyramid vectors (featx fit-gmm).")
@model_opt("guidance", help="--encode: trained guidance (featx fit-guidance), scheme 2.")
@overwrite_opt
def extract(inputs, out, dataset, root, split, sample, crop_boxes, backbone, weights, layers, views,
            scales, project, input_size, batch_size, device, workers, shard_size, dtype, seed,
            skip_bad, encode_methods, encode_views, pca, gmm, guidance, overwrite) -> None:
    """Run BACKBONE over INPUTS (folders, image files, lists of paths, or - for stdin).

    Prints each shard path on stdout as it is completed. Rerunning the same command resumes.
    With --encode the shards hold encodings (featx encode's, bitwise), not activations.
    """
    from featx.stages import extract as stage  # torch: only when the command runs

    views = tuple(f"pyramid:{scales}" if v.strip() == "pyramid" else v.strip()
                  for v in views.split(","))
    encoding = None
    if encode_methods:
        encoding = EncodeConfig(
            methods=tuple(m.strip() for m in encode_methods.split(",")),
            views=tuple(v.strip() for v in encode_views.split(",")) if encode_views else
            tuple(v for v in views if not v.startswith("pyramid")) or ("whole",),
            pca=pca, gmm=gmm, guidance=guidance, device=device)
    elif encode_views or pca or gmm or guidance:
        raise click.UsageError("--encode-views, --pca, --gmm and --guidance go with --encode")
    cfg = ExtractConfig(
        backbone=backbone, layers=[s.strip() for s in layers.split(",")] if layers else None,
        weights=weights,
        views=views, input_size=input_size, project=project,
        batch_size=batch_size, device=device, workers=workers, shard_size=shard_size,
        dtype=dtype, seed=seed, skip_bad=skip_bad, overwrite=overwrite, command=command_line(),
        sample=sample, encode=encoding,
    )
    if dataset and (inputs or not root or (not split and dataset != "folder")):
        raise click.UsageError("--dataset takes --root and --split, and no INPUTS")
    source = stage.image_source(inputs, dataset=dataset, root=root, split=split,
                                crop_boxes=crop_boxes)
    with bars("img") as progress:
        stage.run(source, out, cfg, progress=progress, on_written=emit)
