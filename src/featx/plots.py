"""Every picture featx draws, with matplotlib's object API (no pyplot state, no display):
heat maps over photos, precision-recall curves, confusion matrices. Each function writes one
PNG and returns its path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 100


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    return path


# the width of a character of a 9-point title, in inches (DejaVu Sans averages ~0.6 em)
_CHAR_IN = 9 * 0.6 / 72


def _wrap(title: str, width_in: float) -> str:
    """``title`` broken at spaces into lines that fit ``width_in`` inches at 9 points (a word
    longer than that stays whole: the panel widens to it)."""
    import textwrap

    chars = max(8, int(width_in / _CHAR_IN))
    return "\n".join("\n".join(textwrap.wrap(line, chars, break_long_words=False)) or line
                     for line in title.split("\n"))


def overlays(photo: np.ndarray, panels: Sequence[tuple[str, np.ndarray]], path: str | Path,
             title: str = "", signed: bool = True, label: str = "", alpha: float = 0.65
             ) -> Path:
    """:func:`overlay_figure` as a PNG."""
    return _save(overlay_figure(photo, panels, title, signed, label, alpha), path)


def overlay_figure(photo: np.ndarray, panels: Sequence[tuple[str, np.ndarray]],
                   title: str = "", signed: bool = True, label: str = "", alpha: float = 0.65
                   ) -> Figure:
    """The photo, then one panel per (title, map): the map stretched over the photo, on one
    colour scale for every panel of the figure, so that panels compare, and one colour bar
    that is that scale, labelled ``label`` (the maps' units). ``signed`` maps (scores):
    red positive, blue negative, white at 0, symmetric about 0 (a perceptual diverging
    map); else (activations, >= 0) white at 0 to red at the largest value."""
    n = len(panels) + 1
    h, w = photo.shape[:2]
    side = 2.6
    # a portrait photo's panel is narrow: titles wrap to it, and the panel widens to the
    # longest line, so neighbouring titles never run into each other
    panel = side * max(w / h, 0.5)
    names = [_wrap(name, panel) for name, _ in panels]
    longest = max((len(line) for name in names for line in name.split("\n")), default=0)
    panel = max(panel, longest * _CHAR_IN + 0.15)
    fig = Figure(figsize=(panel * n + 0.9, side + 0.6 + 0.15 * max(
        (name.count("\n") for name in names), default=0)), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    axes[0].imshow(photo)
    axes[0].set_title("image", fontsize=9)
    top = max((float(np.abs(heat).max()) for _, heat in panels), default=0.0) or 1.0
    scale = dict(cmap="RdBu_r", vmin=-top, vmax=top) if signed else \
        dict(cmap="Reds", vmin=0.0, vmax=top)
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    im = None
    for ax, name, (_, heat) in zip(axes[1:], names, panels):
        ax.imshow(photo)
        im = ax.imshow(heat, alpha=alpha, extent=extent, interpolation="bilinear", **scale)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    if im is not None:  # the scale every panel is drawn on, as it is drawn (with its alpha)
        bar = fig.colorbar(im, ax=list(axes[1:]), shrink=0.8)
        bar.set_label(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def pr_figure(recall: np.ndarray, precision: np.ndarray, label: str, title: str = "") -> Figure:
    """One class's precision-recall curve (the points of
    :func:`featx.metrics.precision_recall`), ``label`` in the legend (its AP)."""
    fig = Figure(figsize=(4.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(recall, precision, drawstyle="steps-post", label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


def pr_curve(recall: np.ndarray, precision: np.ndarray, label: str, path: str | Path,
             title: str = "") -> Path:
    """:func:`pr_figure` as a PNG."""
    return _save(pr_figure(recall, precision, label, title), path)


def confusion(matrix: np.ndarray, classes: Sequence[str], path: str | Path,
              title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted), each row as fractions,
    labelled with the counts (scikit-learn's ConfusionMatrixDisplay colours and labels one
    matrix: a fraction cannot tell 1 of 2 from 50 of 100)."""
    m = np.asarray(matrix, float)
    frac = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(classes)
    side = min(max(4.0, 0.35 * n + 2), 20)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    ticks = np.arange(n)
    ax.set_xticks(ticks, classes, rotation=90, fontsize=7 if n > 20 else 9)
    ax.set_yticks(ticks, classes, fontsize=7 if n > 20 else 9)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    return _save(fig, path)
