"""``featx layers``: list backbones, a family's model names, or a backbone's layer aliases with
their shapes."""

from __future__ import annotations

import click

from featx.api import layers as layer_shapes
from featx.backbones import BACKBONES, FAMILIES, get_backbone, list_models


@click.command()
@click.argument("backbone", required=False)
@click.option("--input-size", type=click.IntRange(32), help="Input size (default: the backbone's).")
@click.option("--list", "family", type=click.Choice(FAMILIES),
              help="List every model name of torchvision or timm (usable as FAMILY:NAME).")
def layers(backbone: str | None, input_size: int | None, family: str | None) -> None:
    """List BACKBONE's layer aliases and shapes (C x H x W), with the default cross-layer pair
    and the layers the pyramid view runs densely marked; or the curated backbones if none is
    given. BACKBONE is a curated name or torchvision:NAME / timm:NAME."""
    if family:
        for name in list_models(family):
            click.echo(f"{family}:{name}")
        return
    if backbone is None:
        for bb in BACKBONES.values():
            if ":" not in bb.name:
                click.echo(f"{bb.name}\t{bb.input_size}\t{bb.description}")
        click.echo("... and torchvision:NAME / timm:NAME (featx layers --list torchvision|timm)",
                   err=True)
        return
    bb = get_backbone(backbone)
    roles = dict(zip(bb.cross_layer or (), ("local", "guidance")))
    dense = set(bb.fc_conv[1]) if bb.fc_conv else set()
    for alias, shape in layer_shapes(backbone, input_size).items():
        notes = [f"cross-layer default: {roles[alias]}"] if alias in roles else []
        if alias in dense:
            notes.append("dense in the pyramid view")
        click.echo(f"{alias}\t{'x'.join(map(str, shape))}"
                   + (f" ({'; '.join(notes)})" if notes else ""))
    click.echo(f"preprocessing: mean {', '.join(f'{m:g}' for m in bb.mean)}, std "
               f"{', '.join(f'{s:g}' for s in bb.std)}{', BGR' if bb.bgr else ''}, "
               f"{bb.interpolation}, resize {bb.jitter_size} -> input {bb.input_size} "
               f"({bb.preprocessing or 'as registered'})", err=True)
