"""``featx maps``: confidence maps, cross-layer contribution maps and channel overlays."""

from __future__ import annotations

import click

from featx.cli.options import bars, command_line, device_opt, emit, inputs_arg, out_opt
from featx.cli.options import constraint_type, model_opt, overwrite_opt
from featx.configs import MapsConfig

M = MapsConfig


def _list(cast):
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list") from None
    return parse


@click.command()
@inputs_arg
@out_opt
@model_opt("model", help="svm.h5 (train-svm): draw class evidence (with --gmm, --pca or "
                         "--guidance).")
@model_opt("gmm", help="The GMM of a fisher/mpp/nfk model: object confidence maps (Yoo §4.5).")
@model_opt("pca", help="The cross-layer PCA of a cross-layer model: contribution maps (or the "
                       "pyramid PCA of unprojected pyramids).")
@model_opt("guidance", help="A scheme-2 guidance: contribution maps with --model, else its "
                            "channels.")
@click.option("--layer", help="Overlay channels of this whole-view layer (Liu Fig. 4).")
@click.option("--channels", callback=_list(int), help="Channels to overlay, e.g. 12,40.")
@click.option("--classes", callback=_list(str), help="Classes to draw, by name.")
@click.option("--top", default=M.top, show_default=True, type=constraint_type(M, "top"),
              help="Draw the N highest-scoring classes (or most active channels).")
@click.option("--images", type=click.Path(exists=True, file_okay=False),
              help="Where the images are now, when they moved since extract.")
@click.option("--limit", type=constraint_type(M, "limit"),
              help="Draw N images, spread evenly over the inputs.")
@click.option("--resolution", default=M.resolution, show_default=True, type=constraint_type(M, "resolution"),
              help="Map cells along the image's longer side.")
@click.option("--reduce", type=constraint_type(M, "reduce"), default=M.reduce,
              show_default=True,
              help="Confidence maps: each pixel the mean of the scores of the windows covering "
                   "it, or their sum (Yoo et al. §4.5's accumulation; it favours the centre, "
                   "which more windows cover).")
@device_opt
@overwrite_opt
def maps(inputs, out, model, gmm, pca, guidance, layer, channels, classes, top, images, limit,
         resolution, reduce, device, overwrite):
    """Draw where the evidence lies in each image of activation shards INPUTS: one PNG an
    image (photo + a panel per class or channel) and the raw maps in maps.h5."""
    cfg = MapsConfig(model=model, gmm=gmm, pca=pca, guidance=guidance, layer=layer,
                     channels=channels, classes=classes, top=top, images=images, limit=limit,
                     resolution=resolution, reduce=reduce, device=device, overwrite=overwrite,
                     command=command_line())
    from featx.stages import maps as stage  # torch: only when the command runs

    with bars("img") as progress:
        stage.run(inputs, out, cfg, progress=progress, on_written=emit)
