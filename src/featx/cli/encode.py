"""``featx encode``: activation shards -> encoding shards."""

from __future__ import annotations

import click

from featx.cli.options import bars, command_line, device_opt, emit, inputs_arg, out_opt
from featx.cli.options import constraint_type, model_opt, overwrite_opt
from featx.configs import METHODS, EncodeConfig, JoinConfig

D = EncodeConfig  # the defaults live in the config


def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",")) if text else None


@click.command()
@inputs_arg
@out_opt
@click.option("--method", "methods", default=",".join(D.methods), show_default=True,
              help=f"Comma-separated, concatenated in order: {', '.join(METHODS)}.")
@click.option("--views", default=",".join(D.views), show_default=True,
              help="Views for the local-feature methods: whole (CL-45), blocks (CL-45F), "
                   "whole,blocks (CL-45C).")
@model_opt("pca", help="PCA of the local layer's subarrays (featx fit-pca).")
@model_opt("gmm", help="GMM of the pyramid vectors (featx fit-gmm), for fisher, vlad, mpp, "
                       "nfk, csf.")
@model_opt("guidance", help="Trained guidance (featx fit-guidance): cross-layer pooling scheme 2 "
                            "on the pyramid's dense fc vectors.")
@click.option("--layers", "layer_pair",
              help="LOCAL,GUIDE layers t and t+1 (default: the PCA's layer and the backbone's "
                   "cross-layer guidance).")
@click.option("--fc-layer", help="Layer of global/jitter (default: fc7, else pool).")
@click.option("--power-norm/--no-power-norm", default=None,
              help="Signed square root before L2, for every method. Default: each method's "
                   "paper: L2 alone for global, jitter, centre and crops (Yoo et al. Table 2), "
                   "the square root too for the others.")
@click.option("--l2/--no-l2", default=D.l2, show_default=True, help="L2 normalisation.")
@click.option("--quantize", type=click.Choice(["sign", "sign-raw"]),
              help="Feature-sign quantisation to {-1,0,1}, stored at 2 bits per dimension: "
                   "'sign' is read back at unit L2 norm ({-1,0,1}/sqrt(nonzeros)), 'sign-raw' "
                   "as {-1,0,1} (Liu et al. §4.3.3).")
@click.option("--dtype", type=constraint_type(EncodeConfig, "dtype"), default=D.dtype,
              show_default=True)
@device_opt
@overwrite_opt
def encode(inputs, out, methods, views, pca, gmm, guidance, layer_pair, fc_layer, power_norm,
           l2, quantize, dtype, device, overwrite):
    """Encode activation shards INPUTS (or - for paths on stdin) into encoding shards."""
    cfg = EncodeConfig(
        methods=_split(methods), views=_split(views), pca=pca, gmm=gmm, guidance=guidance,
        fc_layer=fc_layer,
        layers=_split(layer_pair), power_norm=power_norm, l2=l2, quantize=quantize or "none",
        dtype=dtype, device=device, overwrite=overwrite, command=command_line(),
    )
    from featx.stages import encode as stage  # torch: only when the command runs

    with bars("img") as progress:
        stage.run(inputs, out, cfg, progress=progress, on_written=emit)


@click.command()
@inputs_arg
@out_opt
@click.option("--dtype", type=constraint_type(JoinConfig, "dtype"), default=JoinConfig.dtype,
              show_default=True)
@overwrite_opt
def join(inputs, out, dtype, overwrite) -> None:
    """Join encodings of the same images (folders INPUTS) side by side, each part at equal
    weight: e.g. CL-45C with CNN-Jitter, or MPP of fc7 with MPP of pool5.

    Prints each joined shard's path on stdout. Rerunning the same command resumes.
    """
    cfg = JoinConfig(dtype=dtype, overwrite=overwrite, command=command_line())
    from featx.stages import join as join_stage

    with bars("img") as progress:
        join_stage.run(inputs, out, cfg, progress=progress, on_written=emit)
