"""``featx train-svm`` and ``featx evaluate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
from rich.table import Table

from featx.cli.options import bars, command_line, device_opt, emit, inputs_arg, out_opt
from featx.cli.options import constraint_type, overwrite_opt
from featx.cli.progress import stderr
from featx.configs import AUTO_C, AUTO_C_LOGISTIC, EvaluateConfig, TrainSVMConfig


def _parse_c(ctx, param, value: str) -> tuple[float, ...] | str:
    if value.strip() == "auto":
        return "auto"
    try:
        cs = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number, a list of numbers, or auto") from None
    if not all(math.isfinite(v) and v > 0 for v in cs):
        raise click.BadParameter(f"{value!r}: every C must be a finite number > 0")
    return cs


memory_opt = click.option(
    "--memory", default=TrainSVMConfig.memory_gb, show_default=True,
    type=constraint_type(TrainSVMConfig, "memory_gb"),
    help="GB of encodings held at once (two row blocks); more are streamed from the shards.")


@click.command("train-svm")
@inputs_arg
@out_opt
@click.option("--C", "c", default="1", show_default=True, callback=_parse_c,
              help="SVM regularisation constant; several (0.1,1,10) or 'auto' "
                   f"({','.join(f'{c:g}' for c in AUTO_C)}; --loss logistic: "
                   f"{','.join(f'{c:g}' for c in AUTO_C_LOGISTIC)}) choose by "
                   "cross-validation.")
@click.option("--folds", default=TrainSVMConfig.folds, show_default=True,
              type=constraint_type(TrainSVMConfig, "folds"),
              help="Folds of the cross-validation that chooses C.")
@click.option("--include-difficult", is_flag=True,
              help="Multi-label: train on images labelled 0 as positives instead of leaving "
                   "them out.")
@click.option("--solver", default=TrainSVMConfig.solver, show_default=True,
              type=constraint_type(TrainSVMConfig, "solver"),
              help="dual: libsvm on the n x n Gram matrix (hinge loss); primal: Newton on the "
                   "squared hinge, memory independent of n, shared by torchrun ranks; auto: "
                   "dual where 16 n^2 bytes fit in --memory.")
@click.option("--loss", default=TrainSVMConfig.loss, show_default=True,
              type=constraint_type(TrainSVMConfig, "loss"),
              help="hinge: linear SVMs (the dual's hinge, the primal's squared hinge); "
                   "logistic: logistic regression by the primal solver, with probabilities.")
@click.option("--multiclass", default=TrainSVMConfig.multiclass, show_default=True,
              type=constraint_type(TrainSVMConfig, "multiclass"),
              help="ovr: each class against the rest; multinomial: one softmax over the "
                   "classes (--loss logistic, single-label).")
@click.option("--calibrate", is_flag=True,
              help="Probabilities for an SVM: Platt scaling fitted on the cross-validation "
                   "folds' held-out scores.")
@click.option("--standardize", is_flag=True,
              help="Scale each encoding dimension to zero mean and unit variance on the "
                   "training split (stored in the model, applied when it scores).")
@memory_opt
@device_opt
@overwrite_opt
def train_svm(inputs, out, c, folds, include_difficult, solver, loss, multiclass, calibrate,
              standardize, memory, device, overwrite):
    """Train one-vs-rest linear SVMs on encoding shards INPUTS (or - for stdin)."""
    cfg = TrainSVMConfig(c=c, folds=folds, include_difficult=include_difficult, device=device,
                         overwrite=overwrite, command=command_line(), memory_gb=memory,
                         solver=solver, loss=loss, multiclass=multiclass, calibrate=calibrate,
                         standardize=standardize)
    from featx.stages import train_svm as train_stage  # torch: only when it runs

    with bars(train_stage.TrainSVM.unit) as progress:
        paths = train_stage.run(inputs, out, cfg, progress=progress)
    for path in paths:
        emit(path)


@click.command()
@inputs_arg
@click.option("--model", "model_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help="svm.h5 from featx train-svm.")
@click.option("--dataset", type=constraint_type(EvaluateConfig, "dataset"),
              help="The benchmark's metric: voc07 -> 11-point AP; others -> accuracy "
                   "(default: from the labels).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the metrics here (and print this path) instead of on stdout.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Draw a precision-recall curve per class (multi-label) or the confusion "
                   "matrix (single-label) into this folder; the metrics go to "
                   "DIR/metrics.json unless --json; every path is printed on stdout.")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False),
              help="Write every image's id, true label(s) and each class's score (and "
                   "probability, where the model has them) to this CSV; stdout then carries "
                   "paths only (--json FILE for the metrics).")
@memory_opt
@overwrite_opt
@click.pass_context
def evaluate(ctx, inputs, model_path, dataset, json_path, plots_dir, scores_path, memory,
             overwrite):
    """Score encoding shards INPUTS with an SVM model and report the metrics."""
    if plots_dir and not json_path:  # stdout carries paths only
        json_path = str(Path(plots_dir) / "metrics.json")
    from featx.stages import evaluate as evaluate_stage

    stage = evaluate_stage.Evaluate(EvaluateConfig(
        model=model_path, dataset=dataset, memory_gb=memory, plots=plots_dir,
        scores=scores_path, overwrite=overwrite, command=command_line()))
    stage.run(inputs, json_path, on_written=emit)
    if stage.result is None:  # a torchrun rank other than 0: rank 0 holds the metrics
        return
    if not ctx.obj["quiet"]:
        stderr.print(result_table(stage.result))
    if not json_path and not scores_path:  # a written file's path is what stdout carries
        click.echo(json.dumps(stage.result, indent=2))


def result_table(result: dict) -> Table:
    """A rich table of the per-class numbers (AP or accuracy; precision, recall, F1 and
    support of the predictions) and the summary."""
    table = Table(title=f"{result['metric']} on {result['n_images']} images "
                        f"({result.get('split') or 'unnamed split'})")
    table.add_column("class")
    multi = "AP" in result
    firsts = ["AP (11-pt)", "AP (all-pt)"] if multi else ["accuracy"]
    for name in [*firsts, "precision", "recall", "F1", "support"]:
        table.add_column(name, justify="right")
    prf = "precision" in result
    for c, name in enumerate(result["classes"]):
        first = ([_pct(result["AP"][c]), _pct(result["AP_all_point"][c])] if multi
                 else [_pct(result["class_accuracy"][c])])
        rest = [_pct(result[k][c]) for k in ("precision", "recall", "f1")] + \
            [str(result["support"][c])] if prf else ["-"] * 4
        table.add_row(name, *first, *rest)
    for avg in ("macro", "weighted") if prf else ():
        lead = ([_pct(result["mAP"]), _pct(result["mAP_all_point"])] if avg == "macro" and multi
                else [f"{100 * result['mean_class_accuracy']:.2f}"] if avg == "macro"
                else [""] * len(firsts))
        table.add_row(f"[bold]{avg} mean", *lead,
                      *(_pct(result[avg][k]) for k in ("precision", "recall", "f1")),
                      str(sum(result["support"])) if avg == "weighted" else "")
    if not multi:
        table.add_row("[bold]top-1 accuracy", f"[bold]{100 * result['top1']:.2f}",
                      *[""] * 4)
        if "top5" in result:
            table.add_row("[bold]top-5 accuracy", f"[bold]{100 * result['top5']:.2f}",
                          *[""] * 4)
    if "log_loss" in result:
        table.add_row(f"log-loss ({result['probability']})", f"{result['log_loss']:.4f}",
                      *[""] * (len(firsts) + 3))
        table.add_row("Brier score", f"{result['brier']:.4f}", *[""] * (len(firsts) + 3))
    return table


def _pct(value: float | None) -> str:
    """A fraction as a percentage; "-" for none (a class without positives or images)."""
    return "-" if value is None else f"{100 * value:.2f}"
