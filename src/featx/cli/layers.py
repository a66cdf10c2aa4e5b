"""``featx layers``: list backbones, or a backbone's layer aliases with their shapes."""

from __future__ import annotations

import click

from featx.backbones import BACKBONES, get_backbone, layer_shapes


@click.command()
@click.argument("backbone", required=False)
@click.option("--input-size", type=click.IntRange(32), help="Input size (default: the backbone's).")
def layers(backbone: str | None, input_size: int | None) -> None:
    """List BACKBONE's layer aliases and shapes (C x H x W), or every backbone if none given."""
    if backbone is None:
        for bb in BACKBONES.values():
            click.echo(f"{bb.name}\t{bb.input_size}\t{bb.description}")
        return
    bb = get_backbone(backbone)
    size = input_size or bb.input_size
    roles = dict(zip(bb.cross_layer or (), ("local", "guidance")))
    for alias, shape in layer_shapes(bb, size).items():
        pair = f" (cross-layer default: {roles[alias]})" if alias in roles else ""
        click.echo(f"{alias}\t{'x'.join(map(str, shape))}{pair}")
