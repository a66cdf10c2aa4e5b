"""``featx train-svm`` and ``featx evaluate``."""

from __future__ import annotations

import click

from featx.classify import evaluate_stage, result_table, train_svm_stage, write_json
from featx.cli.options import command_line, device_opt, emit, inputs_arg, out_opt
from featx.cli.options import overwrite_opt
from featx.runtime import progress_bar, stderr
from featx.shards import stdin_paths


@click.command("train-svm")
@inputs_arg
@out_opt
@click.option("--C", "c", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="SVM regularisation constant.")
@click.option("--include-difficult", is_flag=True,
              help="Multi-label: train on images labelled 0 as positives instead of leaving "
                   "them out.")
@device_opt
@overwrite_opt
@click.pass_context
def train_svm(ctx, inputs, out, c, include_difficult, device, overwrite):
    """Train one-vs-rest linear SVMs on encoding shards INPUTS (or - for stdin)."""
    with progress_bar("class", not ctx.obj["quiet"]) as bar:
        task = bar.add_task("train-svm", total=None)
        path = train_svm_stage(stdin_paths(inputs), out, c=c, include_difficult=include_difficult,
                               device=device, overwrite=overwrite, command=command_line(),
                               progress=lambda: bar.advance(task))
    emit(path)


@click.command()
@inputs_arg
@click.option("--model", "model_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help="svm.h5 from featx train-svm.")
@click.option("--dataset", type=click.Choice(["voc07", "mit67", "cub200", "flowers102", "folder"]),
              help="The benchmark's metric: voc07 -> 11-point AP; others -> accuracy "
                   "(default: from the labels).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the metrics here (and print this path) instead of on stdout.")
@click.pass_context
def evaluate(ctx, inputs, model_path, dataset, json_path):
    """Score encoding shards INPUTS with an SVM model and report the metrics."""
    result = evaluate_stage(stdin_paths(inputs), model_path, dataset)
    if not ctx.obj["quiet"]:
        stderr.print(result_table(result))
    text = write_json(result, json_path)
    if json_path:
        emit(json_path)
    else:
        click.echo(text)
