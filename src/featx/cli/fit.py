"""``featx fit-pca``, ``featx fit-gmm`` and ``featx fit-guidance``: models fitted on local
features."""

from __future__ import annotations

import click

from featx.cli.options import bars, command_line, device_opt, emit, inputs_arg, out_opt
from featx.cli.options import constraint_type, overwrite_opt, seed_opt
from featx.configs import FitGMMConfig, FitGuidanceConfig, FitPCAConfig

P, G, GD = FitPCAConfig, FitGMMConfig, FitGuidanceConfig  # the defaults live in the configs


def per_image_opt(cfg_type: type):
    return click.option("--per-image", default=cfg_type.per_image, show_default=True,
                        type=constraint_type(cfg_type, "per_image"),
                        help="Local features sampled per image.")


@click.command("fit-pca")
@inputs_arg
@out_opt
@click.option("--layer", help="Layer alias of the activations (default: the backbone's "
                               "cross-layer local layer, conv4 / stage6 / ...).")
@click.option("--view", default=P.view, show_default=True, help="whole, blocks, jitter or pyramid.")
@click.option("--local", default=None,
              help="subarray:MxN or dense (default: subarray:KxK for the backbone's "
                   "cross-layer local layer, K the guidance layer's kernel; else dense).")
@click.option("--dim", default=None, type=constraint_type(P, "dim"),
              show_default="the backbone's: 500, efficientnet_lite0 128 (featx layers NAME)",
              help="Components kept.")
@per_image_opt(P)
@click.option("--whiten", is_flag=True, help="Scale components to unit variance.")
@seed_opt
@device_opt
@overwrite_opt
def fit_pca_cmd(inputs, out, layer, view, local, dim, per_image, whiten, seed, device,
                overwrite):
    """Fit a PCA on local features of LAYER sampled from activation shards INPUTS."""
    cfg = FitPCAConfig(layer=layer, view=view, local=local, dim=dim, per_image=per_image,
                       whiten=whiten, seed=seed, device=device, overwrite=overwrite,
                       command=command_line())
    from featx.stages import fit_pca  # torch: only when the command runs

    for path in fit_pca.run(inputs, out, cfg):
        emit(path)


@click.command("fit-gmm")
@inputs_arg
@out_opt
@click.option("--pca", "pca_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="PCA from fit-pca; its layer, view and local features are used.")
@click.option("--components", default=G.components, show_default=True, type=constraint_type(G, "components"))
@per_image_opt(G)
@click.option("--max-iter", default=G.max_iter, show_default=True, type=constraint_type(G, "max_iter"))
@click.option("--tol", default=G.tol, show_default=True, type=constraint_type(G, "tol"),
              help="Stop when the average log-likelihood changes less than this.")
@click.option("--n-init", default=G.n_init, show_default=True, type=constraint_type(G, "n_init"))
@click.option("--var-floor", default=G.var_floor, show_default=True,
              type=constraint_type(G, "var_floor"),
              help="Variance floor, relative to the largest per-dimension variance.")
@seed_opt
@device_opt
@overwrite_opt
def fit_gmm_cmd(inputs, out, pca_path, components, per_image, max_iter, tol, n_init, var_floor,
                seed, device, overwrite):
    """Fit a diagonal GMM by EM on PCA-reduced local features sampled from INPUTS."""
    cfg = FitGMMConfig(pca=pca_path, components=components, per_image=per_image,
                       max_iter=max_iter, tol=tol, n_init=n_init, var_floor=var_floor, seed=seed,
                       device=device, overwrite=overwrite, command=command_line())
    from featx.stages import fit_gmm

    for path in fit_gmm.run(inputs, out, cfg):
        emit(path)


def _scale_list(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of scale indices (0,1,...)") from None


@click.command("fit-guidance")
@inputs_arg
@out_opt
@click.option("--pca", "pca_path", type=click.Path(exists=True, dir_okay=False),
              help="The pyramid PCA, when the shards are stored unprojected.")
@click.option("--layer", help="The pyramid layer (default: the shards' only one).")
@click.option("--scales", callback=_scale_list,
              help="Pyramid scale indices to use, e.g. 0,1 (default: all).")
@click.option("--channels", default=GD.channels, show_default=True, type=constraint_type(GD, "channels"),
              help="K: output channels of the guidance convolution.")
@click.option("--kernel", default=GD.kernel, show_default=True, type=constraint_type(GD, "kernel"),
              help="Guidance kernel size (odd).")
@click.option("--epochs", default=GD.epochs, show_default=True, type=constraint_type(GD, "epochs"),
              help="Most epochs (0: keep the random initialisation).")
@click.option("--batch-size", default=GD.batch_size, show_default=True, type=constraint_type(GD, "batch_size"))
@click.option("--lr", default=GD.lr, show_default=True, type=constraint_type(GD, "lr"),
              help="Adam learning rate.")
@click.option("--weight-decay", default=GD.weight_decay, show_default=True,
              type=constraint_type(GD, "weight_decay"))
@click.option("--holdout", default=GD.holdout, show_default=True,
              type=constraint_type(GD, "holdout"),
              help="Fraction of the images held out for early stopping.")
@click.option("--patience", default=GD.patience, show_default=True, type=constraint_type(GD, "patience"),
              help="Epochs without a better held-out loss before stopping.")
@seed_opt
@device_opt
@overwrite_opt
def fit_guidance_cmd(inputs, out, pca_path, layer, scales, channels, kernel, epochs, batch_size,
                     lr, weight_decay, holdout, patience, seed, device, overwrite):
    """Train scheme 2's pooling-guidance convolution on the dense pyramid vectors of labelled
    activation shards INPUTS (Liu et al. 2016)."""
    cfg = FitGuidanceConfig(pca=pca_path, layer=layer, scales=scales, channels=channels,
                            kernel=kernel, epochs=epochs, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, holdout=holdout, patience=patience,
                            seed=seed, device=device, overwrite=overwrite,
                            command=command_line())
    from featx.stages import fit_guidance

    with bars(fit_guidance.FitGuidance.unit) as progress:
        paths = list(fit_guidance.run(inputs, out, cfg, progress=progress))
    for path in paths:
        emit(path)
