"""``featx fit-pca`` and ``featx fit-gmm``: models fitted on sampled local features."""

from __future__ import annotations

import click

from featx.cli.options import command_line, device_opt, emit, inputs_arg, out_opt
from featx.cli.options import overwrite_opt, seed_opt
from featx.fitting import fit_gmm_stage, fit_pca_stage
from featx.shards import stdin_paths

per_image_opt = click.option("--per-image", default=100, show_default=True,
                             type=click.IntRange(1), help="Local features sampled per image.")


@click.command("fit-pca")
@inputs_arg
@out_opt
@click.option("--layer", required=True, help="Layer alias of the activations.")
@click.option("--view", default="whole", show_default=True, help="whole, blocks or jitter.")
@click.option("--local", default=None,
              help="subarray:MxN or dense (default: subarray:KxK for the backbone's "
                   "cross-layer local layer, K the guidance layer's kernel; else dense).")
@click.option("--dim", default=500, show_default=True, type=click.IntRange(1),
              help="Components kept.")
@per_image_opt
@click.option("--whiten", is_flag=True, help="Scale components to unit variance.")
@seed_opt
@device_opt
@overwrite_opt
def fit_pca(inputs, out, layer, view, local, dim, per_image, whiten, seed, device, overwrite):
    """Fit a PCA on local features of LAYER sampled from activation shards INPUTS."""
    emit(fit_pca_stage(stdin_paths(inputs), out, layer=layer, view=view, local=local, dim=dim,
                       per_image=per_image, whiten=whiten, seed=seed, device=device,
                       overwrite=overwrite, command=command_line()))


@click.command("fit-gmm")
@inputs_arg
@out_opt
@click.option("--pca", "pca_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="PCA from fit-pca; its layer, view and local features are used.")
@click.option("--components", default=256, show_default=True, type=click.IntRange(1))
@per_image_opt
@click.option("--max-iter", default=100, show_default=True, type=click.IntRange(1))
@click.option("--tol", default=1e-3, show_default=True, type=float,
              help="Stop when the average log-likelihood changes less than this.")
@click.option("--n-init", default=1, show_default=True, type=click.IntRange(1))
@click.option("--var-floor", default=1e-4, show_default=True, type=float,
              help="Variance floor, relative to the largest per-dimension variance.")
@seed_opt
@device_opt
@overwrite_opt
def fit_gmm(inputs, out, pca_path, components, per_image, max_iter, tol, n_init, var_floor,
            seed, device, overwrite):
    """Fit a diagonal GMM by EM on PCA-reduced local features sampled from INPUTS."""
    emit(fit_gmm_stage(stdin_paths(inputs), out, pca_path=pca_path, components=components,
                       per_image=per_image, max_iter=max_iter, tol=tol, n_init=n_init,
                       var_floor=var_floor, seed=seed, device=device, overwrite=overwrite,
                       command=command_line()))
