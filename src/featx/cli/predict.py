"""``featx export`` (a trained chain as one classifier file) and ``featx predict`` (its labels
for new photos)."""

from __future__ import annotations

import click

from featx.cli.options import bars, batch_size_opt, command_line, device_opt, emit, images_arg
from featx.cli.options import constraint_type, model_opt, out_opt, overwrite_opt
from featx.configs import DATASETS, PREDICT_FORMATS, ExportConfig, PredictConfig

P = PredictConfig  # the defaults live in the config


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The SVM to export (featx train-svm).")
@out_opt
@click.option("--encodings", multiple=True, type=click.Path(exists=True),
              help="The folder of its training encodings (default: the one the SVM records).")
@model_opt("pca", help="The PCA the chain used, if it is no longer where the encodings say.")
@model_opt("gmm", help="The GMM the chain used, ditto.")
@model_opt("guidance", help="The guidance the chain used, ditto.")
@click.option("--project", type=click.Path(exists=True, dir_okay=False),
              help="The PCA extract --project used, ditto.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="The backbone's state-dict file, when the chain's weights came from one "
                   "(checked by digest; predict takes it again).")
@overwrite_opt
def export(model, out, encodings, pca, gmm, guidance, project, weights, overwrite) -> None:
    """One classifier file (-o) of a trained SVM and the chain that made its encodings:
    backbone, layers, views, preprocessing, PCA/GMM/guidance, encoding, SVM and class names.

    Every model file is checked against the digest its encodings record. featx predict runs
    the file on new photos.
    """
    from featx.stages import export as stage

    cfg = ExportConfig(model=model, encodings=tuple(encodings) or None, pca=pca, gmm=gmm,
                       guidance=guidance, project=project, weights=weights,
                       overwrite=overwrite, command=command_line())
    stage.run(out, cfg, on_written=emit)


@click.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@images_arg
@out_opt
@click.option("--dataset", type=click.Choice(list(DATASETS)),
              help="Read a benchmark in its standard layout instead of INPUTS.")
@click.option("--root", type=click.Path(), help="The dataset's folder (or CSV for folder).")
@click.option("--split", default="", help="The dataset's split (as featx extract).")
@click.option("--top-k", default=P.top_k, show_default=True,
              type=constraint_type(P, "top_k"),
              help="Labels a photo (a multi-label model gives every label scored over 0).")
@click.option("--format", "fmt", default=P.format, show_default=True,
              type=click.Choice(list(PREDICT_FORMATS)), help="The table's format.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="The backbone's state-dict file, when the bundle's weights came from one.")
@batch_size_opt(P)
@device_opt
@click.option("--workers", type=constraint_type(P, "workers"),
              help="Decoding processes (default: the CPUs).")
@click.option("--shard-size", default=P.shard_size, show_default=True,
              type=constraint_type(P, "shard_size"), help="Photos per predictions shard.")
@click.option("--skip-bad", is_flag=True, help="Skip undecodable images (no row; the shards "
                                               "record them).")
@overwrite_opt
def predict(bundle, inputs, out, dataset, root, split, top_k, fmt, weights, batch_size, device,
            workers, shard_size, skip_bad, overwrite) -> None:
    """Label the photos INPUTS (folders, image files, lists of paths, or - for stdin) with
    BUNDLE (featx export): one pass, no activations written.

    Writes predictions shards and, once all are complete, the table OUT/predictions.csv (one
    row a photo: path, label(s), score(s)), whose path is printed. Rerunning resumes.
    """
    from featx.stages import predict as stage
    from featx.stages.extract import image_source

    cfg = PredictConfig(bundle=bundle, top_k=top_k, format=fmt, weights=weights,
                        batch_size=batch_size, device=device, workers=workers,
                        shard_size=shard_size, skip_bad=skip_bad, overwrite=overwrite,
                        command=command_line())
    if dataset and (inputs or not root or (not split and dataset != "folder")):
        raise click.UsageError("--dataset takes --root and --split, and no INPUTS")
    source = image_source(inputs, dataset=dataset, root=root, split=split)
    with bars("img") as progress:
        stage.run(source, out, cfg, progress=progress, on_written=emit)
