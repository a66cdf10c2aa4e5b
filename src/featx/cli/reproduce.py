"""``featx reproduce``: the papers' tables, side by side with the published numbers."""

from __future__ import annotations

from pathlib import Path

import click

from featx.cli.options import bars, emit


def _data_default() -> Path:
    from featx import environment

    return Path(environment.get("FEATX_DATA"))


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=lambda: _data_default(),
              show_default="$FEATX_DATA or data",
              help="Where the benchmarks are, in their standard layouts (none found: the "
                   "offline run on the shipped flower photos).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              default=Path("work") / "reproduce", show_default=True,
              help="Working folder (activations, models, finished rows); a rerun resumes.")
@click.option("--reports", type=click.Path(file_okay=False, path_type=Path),
              default=Path("work") / "reports", show_default=True,
              help="Where the reports go (untracked by default: the committed reference of "
                   "the offline run is reports/flowers-demo.md, refreshed with --reports "
                   "reports).")
@click.option("--offline", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("data") / "flowers-demo", show_default=True,
              help="The photos of the offline run.")
@click.option("--backbone", help="Another backbone (its own cross-layer pair and fc layer).")
@click.option("--weights", help="imagenet, none, or a state-dict file.")
@click.option("--input-size", type=click.IntRange(32))
@click.option("--scales", type=click.IntRange(1), help="Scales of the pyramids.")
@click.option("--only", help="Comma-separated rows (and what they need), e.g. CL-45C,MPP.")
@click.option("--spread", is_flag=False, flag_value="capped,1-thread", default=None,  # all of
              # featx.reproduce.spread.CONFIGS (not imported here: it loads torch)
              metavar="[CONFIGS]",
              help="Run the whole reproduction again under other kernel paths and thread "
                   "counts (capped, 1-thread; bare --spread: both) and print each row's "
                   "spread beside its number.")
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan and stop.")
@click.pass_context
def reproduce(ctx, data, work, reports, offline, backbone, weights, input_size, scales, only,
              spread, plan_only):
    """Reproduce the papers' tables on every benchmark under --data: one report each, the
    published numbers beside ours (docs/reproduce.md). Prints each report's path."""
    from featx.reproduce import reproduce as run

    quiet = ctx.obj["quiet"]
    paths = run(data, work, reports, offline=offline,
                only={x.strip() for x in only.split(",")} if only else None,
                plan_only=plan_only, spread=spread, backbone=backbone, weights=weights,
                input_size=input_size, scales=scales, bars=bars,
                on_plan=lambda text: None if quiet else click.echo(text, err=True))
    for path in paths:
        emit(path)
