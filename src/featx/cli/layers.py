"""``featx layers``: list backbones, a family's model names, or a backbone's layer aliases with
their shapes."""

from __future__ import annotations

import json

import click

from featx.configs import BACKBONES, FAMILIES


@click.command()
@click.argument("backbone", required=False)
@click.option("--input-size", type=click.IntRange(32), help="Input size (default: the backbone's).")
@click.option("--list", "family", type=click.Choice(FAMILIES),
              help="List every model name of torchvision or timm (usable as FAMILY:NAME).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document on stdout: the list, or the backbone's layers (alias, "
                   "shape, role, dense) and preprocessing.")
def layers(backbone: str | None, input_size: int | None, family: str | None,
           as_json: bool) -> None:
    """List BACKBONE's layer aliases and shapes (C x H x W), with the default cross-layer pair
    and the layers the pyramid view runs densely marked; or the curated backbones if none is
    given. BACKBONE is a curated name or torchvision:NAME / timm:NAME."""
    if family:
        from featx.backbones import list_models

        names = [f"{family}:{name}" for name in list_models(family)]
        click.echo(json.dumps(names) if as_json else "\n".join(names))
        return
    if backbone is None:
        if as_json:
            click.echo(json.dumps([{"name": name, "input_size": size, "description": text}
                                   for name, (size, text) in BACKBONES.items()]))
            return
        for name, (size, text) in BACKBONES.items():
            click.echo(f"{name}\t{size}\t{text}")
        click.echo("... and torchvision:NAME / timm:NAME (featx layers --list torchvision|timm)",
                   err=True)
        return
    from featx.api import layers as layer_shapes  # torch: for a backbone's layers only
    from featx.backbones import get_backbone

    bb = get_backbone(backbone)
    roles = dict(zip(bb.cross_layer or (), ("local", "guidance")))
    dense = set(bb.fc_conv[1]) if bb.fc_conv else set()
    shapes = layer_shapes(backbone, input_size)
    # an alias of a module named before it (timm's stage1 is act1): the same output, said once
    first: dict[str, str] = {}
    same = {alias: first.setdefault(path, alias) for alias, path in bb.layers.items()}
    same = {alias: other for alias, other in same.items() if other != alias}
    if as_json:
        click.echo(json.dumps({
            "backbone": bb.name, "input_size": input_size or bb.input_size,
            "layers": [{"alias": alias, "shape": list(shape), "role": roles.get(alias),
                        "dense_in_pyramid": alias in dense, "same_as": same.get(alias)}
                       for alias, shape in shapes.items()],
            "preprocessing": {"mean": list(bb.mean), "std": list(bb.std), "bgr": bb.bgr,
                              "interpolation": bb.interpolation, "resize": bb.jitter_size,
                              "input": bb.input_size},
            "pca_dim": bb.pca_dim}))
        return
    for alias, shape in shapes.items():
        notes = [f"cross-layer default: {roles[alias]}"] if alias in roles else []
        if alias in same:
            notes.append(f"= {same[alias]}, the same module")
        if alias in dense:
            notes.append("dense in the pyramid view")
        click.echo(f"{alias}\t{'x'.join(map(str, shape))}"
                   + (f" ({'; '.join(notes)})" if notes else ""))
    click.echo(f"fit-pca's default --dim for {bb.name}: {bb.pca_dim}", err=True)
    click.echo(f"preprocessing: mean {', '.join(f'{m:g}' for m in bb.mean)}, std "
               f"{', '.join(f'{s:g}' for s in bb.std)}{', BGR' if bb.bgr else ''}, "
               f"{bb.interpolation}, resize {bb.jitter_size} -> input {bb.input_size} "
               f"({bb.preprocessing or 'as registered'})", err=True)
