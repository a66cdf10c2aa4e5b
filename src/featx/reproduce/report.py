"""The report of a reproduction: the papers' tables with our numbers, the rows not run, the
settings and this run's deviations, the plan and the time. Its text is the template
``report.md`` beside this module; this module computes what fills it."""

from __future__ import annotations

import math
from pathlib import Path
from string import Template

from featx.backbones import get_backbone
from featx.backbones.features import dense_shapes, layer_shapes, receptive_fields
from featx.datasets import VOC_CLASSES
from featx.encoders.fisher import region_indices
from featx.images import ViewSpec
from featx.io.output import save_text
from featx.reproduce import published
from featx.reproduce.numbers import duration, ours
from featx.reproduce.rows import PHASE
from featx.reproduce.spread import WHY, describe

TEMPLATE = Path(__file__).with_name("report.md")


def _sp_regions_empty(rep) -> bool:
    """Whether no vector of the MPP pyramid has its receptive field centred in the top or the
    bottom third of the image at any scale (AlexNet's fc7 at 227 and 321 px): MPP + SP's
    top and bottom regions are then empty."""
    s = rep.s
    bb = get_backbone(s.backbone)
    layer = s.pyramid_layers[0]
    size = rep.size(pyramid=True) or bb.input_size
    sizes = ViewSpec("pyramid", scales=s.scales).sizes(size)
    if bb.fc_conv and layer in bb.fc_conv[1]:
        counts = [d[layer][0] for d in dense_shapes(bb, [layer], sizes)]
    else:
        counts = [math.prod(layer_shapes(bb, z)[layer][1:]) for z in sizes]
    geometry = receptive_fields(bb, layer, sizes)
    return all(len(i) == 0 for top, bottom in ((0.0, 1 / 3), (2 / 3, 1.0))
               for i in region_indices(sizes, counts, top, bottom, geometry))


def _samples(rep) -> str:
    """How many features each model was fitted on, as this run recorded them."""
    used = rep.used
    parts = [PHASE[key.split("-")[0]].pca.format(*used[key]) for key in sorted(used)
             if key.endswith("-pca")]
    parts += [f"the {key.split('-')[0]} GMM on {used[key][0]:,} projected vectors of "
              f"{used[key][1]:,} images" for key in sorted(used) if key.endswith("-gmm")]
    s = rep.s
    return "; ".join(parts) or (f"asked: {s.pca_vectors:,} local features a PCA, "
                                f"{s.gmm_vectors:,} pyramid vectors a GMM")


def _header(paper: bool, spread: bool) -> list[str]:
    """A table's header lines: row, ours, [spread], [paper, delta, reference], dims, C,
    normalisation."""
    cells = ["row", "ours", *(["spread"] if spread else []),
             *(["paper", "delta", "reference"] if paper else []), "dims", "C", "normalisation"]
    right = {"ours", "spread", "paper", "delta", "dims", "C"}
    return ["| " + " | ".join(cells) + " |",
            "|" + "|".join("---:" if c in right else "---" for c in cells) + "|"]


def spread_cell(spread: dict) -> str:
    """A row's spread: max - min in points, with the range when it is not 0."""
    lo, hi = spread["min"], spread["max"]
    return "0" if hi == lo else f"{hi - lo:.2f} ({lo:.2f}–{hi:.2f})"


def _row(name: str, result: dict, paper: str | None = None, spread: dict | None = None) -> str:
    """A table row: ours, its spread when measured, the paper's cells when given (paper |
    delta | reference), then dims, C and normalisation."""
    cells = [name, f"{ours(result):.2f}", *([spread_cell(spread)] if spread else []),
             *([paper] if paper else []), f"{result['dim']:,}", f"{result['C']:g}",
             result.get("normalisation", "?")]
    return "| " + " | ".join(cells) + " |"


def _spread_note(results: dict, spread: dict | None, configs: list[str]) -> str:
    """The paragraph that says what the spread column is, and which rows move by more than
    one test image (single-label data: one image is 100 / n points)."""
    if spread is None:
        return ("Spread across CPUs: not measured in this run (`featx reproduce --spread`, "
                "docs/reproduce.md).\n\n")
    text = ("Column spread: the most the row's number moved (max - min, in points) between "
            f"this run and the same run again under {describe(configs)} -- the kernels "
            "another CPU picks and another thread count (docs/reproduce.md).")
    first = next(iter(results.values()))["metrics"]
    if first.get("metric") == "accuracy":
        image = 100 / first["n_images"]
        over = [r for r, v in spread.items() if v["max"] - v["min"] > image + 1e-9]
        text += f" One test image is {image:.2f} points; " + (
            "no row moved by more than one." if not over else
            "rows that moved by more than one: " + "; ".join(
                f"{r} ({WHY.get(r, 'not explained yet')})" for r in over) + ".")
    return text + "\n\n"


def _backbone_notes(s) -> str:
    """The settings notes that apply to this backbone: AlexNet's variant and Yoo's Caffe
    pyramid for the papers' network, the pyramid's own sizes for another."""
    notes = []
    if s.backbone.startswith("alexnet"):
        notes += [
            "torchvision's AlexNet is the 'one weird trick' variant: conv4 has 256 channels "
            "where Caffe's (the papers') has 384, and there is no LRN; `alexnet_caffe` with "
            "converted weights is the faithful setting. Exact agreement is not expected.",
            "Yoo's pyramid: 7 scales of 227·√2^i with fc7 computed densely (4,410 vectors an "
            "image for Caffe's network, Table 1); torchvision's padding gives slightly different "
            "counts. With an --input-size below the backbone's, the pyramids still start at the "
            "backbone's size (dense fc layers need a full pool5 window)."]
    else:
        notes.append(f"The pyramids: {s.scales} scales growing by √2 from the input size, "
                     f"{', '.join(s.pyramid_layers)} computed densely over each (Yoo et al.'s "
                     "7 scales of 227·√2^i are for AlexNet's fc7).")
    notes.append("MPP + SP places each vector by its receptive-field centre, from the "
                 "network's own arithmetic of strides, kernels and paddings "
                 "(featx.backbones.features.receptive_field).")
    return "".join(f"- {n}\n" for n in notes)


def _pictures(rep, reports: Path) -> str:
    """The pictures the run drew, linked (relative to the report) under the row they
    explain: MPP's confusion matrix and its SVM's confidence maps of a few test photos."""
    import os

    folder = getattr(rep, "maps_dir", None)
    if folder is None or not Path(folder).is_dir():
        return ""

    def link(path: Path, text: str) -> str:
        return f"[{text}]({Path(os.path.relpath(path, reports)).as_posix()})"

    items = []
    confusion = Path(folder) / "plots-mpp" / "confusion.png"
    if confusion.is_file():
        items.append(link(confusion, "its confusion matrix on the test split"))
    maps = sorted((Path(folder) / "confidence").glob("*.png"))
    if maps:
        items.append("its SVM's confidence maps (Yoo et al. §4.5) of test photos: "
                     + ", ".join(link(p, p.stem) for p in maps))
    return f"\n## Pictures\n\n- MPP: {'; '.join(items)}.\n" if items else ""


def write_report(rep, results: dict[str, dict], reports: Path, plan_text: str,
                 spread: dict[str, dict] | None = None, spread_configs: list[str] = (),
                 plan_rows: list[dict] = ()) -> Path:
    """``reports/<setup>.md`` from the template, for the rows in ``results``; ``spread``:
    {row: {"min", "max", ...}} from :func:`featx.reproduce.spread.values`, a column when
    given."""
    s = rep.s
    reports.mkdir(parents=True, exist_ok=True)
    multi = "mAP" in next(iter(results.values()))["metrics"]

    def sp(row: str) -> dict | None:
        return spread[row] if spread is not None else None

    tables, shown = [], set()
    for tid, (title, trows) in published.TABLES.items():
        rows = [(row, cells.get(s.dataset)) for row, cells in trows.items() if row in results]
        if not rows:
            continue
        shown.update(row for row, _ in rows)
        if any(pub for _, pub in rows):
            tables += [f"## {title}", "", *_header(True, spread is not None)]
            for row, pub in rows:
                o = ours(results[row])
                paper = (f"{pub[0]:.2f} | {o - pub[0]:+.2f} | {pub[1]}" if pub
                         else "— | — | not published")
                tables.append(_row(row, results[row], paper, sp(row)))
            if tid in published.NOTES and published.NOTES[tid][0] == s.dataset:
                tables += ["", published.NOTES[tid][1]]
        else:  # nothing published for this dataset: ours only
            tables += [f"## {title}", "", *_header(False, spread is not None),
                       *(_row(row, results[row], spread=sp(row)) for row, _ in rows)]
        tables.append("")
    other = [r for r in results if r not in shown]
    if other:
        tables += ["## Other rows (no published number)", "", *_header(False, spread is not None),
                   *(_row(r, results[r], spread=sp(r)) for r in other), ""]
    if s.dataset == "voc07":
        tables += ["## Yoo et al. Table 5: VOC07 per-class AP", "",
                   "| row | " + " | ".join(VOC_CLASSES) + " | mAP |",
                   "|---|" + "---:|" * (len(VOC_CLASSES) + 1)]
        for row, pub in published.YOO_T5.items():
            if row in results:
                ap = results[row]["metrics"]["AP"]
                tables.append(f"| {row} (ours) | " + " | ".join(
                    "—" if a is None else f"{100 * a:.1f}" for a in ap)
                              + f" | {ours(results[row]):.1f} |")
            tables.append(f"| {row} (paper) | " + " | ".join(f"{v:.1f}" for v in pub) + " |")
        tables.append("")
    not_run = [f"| {k} | {v} |" for k, v in published.NOT_RUN.items()]
    if "34" not in s.pairs:
        not_run.append("| CL-34, CL-34F, CL-34C | this backbone has no conv3/conv4 pair |")
    this_run = [f"- This run: {d}." for d in rep.deviations]
    if "MPP + SP" in results and _sp_regions_empty(rep):
        this_run.append(
            "- This run: MPP + SP's top and bottom thirds are empty: at these pyramid sizes no "
            f"{s.pyramid_layers[0]} vector has its receptive field centred there "
            "(featx.backbones.features.receptive_field), so the row adds nothing to MPP but its "
            "middle region, which is MPP's vectors again.")
    recorded = rep.times
    stages, phases = recorded.get("stages", {}), recorded.get("phases", {})
    times = [f"| {k} | {v:.1f} |" for k, v in stages.items()]
    times.append(f"| total | {sum(stages.values()):.1f} |")
    phase_times = [f"| {r['phase']} | {duration(r['seconds'])} | "
                   f"{duration(phases[r['phase']]) if r['phase'] in phases else '—'} |"
                   for r in plan_rows]
    text = Template(TEMPLATE.read_text()).substitute(
        backbone_notes=_backbone_notes(s),
        spread_note=_spread_note(results, spread, list(spread_configs)), name=s.name,
        note_block=f"> {s.note}\n\n" if s.note else "", backbone=s.backbone,
        weights=s.weights, input_size=s.input_size or "the backbone default",
        pairs=", ".join(f"{k}: {a}->{b}" for k, (a, b) in s.pairs.items()), cl_dim=s.cl_dim,
        blocks=s.blocks.replace("x", "×"), pyramid_layers=", ".join(s.pyramid_layers),
        scales=s.scales, fv_dim=s.fv_dim, components=s.components, C=s.C, train=s.train,
        test=s.test, metric="mAP (VOC07 11-point AP)" if multi else "top-1 accuracy",
        tables="\n".join(tables), not_run="\n".join(not_run), samples=_samples(rep),
        fc_power="" if s.fc_power is None else " This run forced the fc baselines to "
        + ("√+L2." if s.fc_power else "L2 alone."),
        guidance_channels=s.guidance_channels,
        guidance_scales=min(s.guidance_scales, s.scales), guidance_epochs=s.guidance_epochs,
        this_run="".join(line + "\n" for line in this_run), plan=plan_text,
        times="\n".join(times), phase_times="\n".join(phase_times),
        pictures=_pictures(rep, reports))
    return save_text(reports / f"{s.name}.md", text)
