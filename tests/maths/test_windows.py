"""The maths of featx maps: window geometry, accumulation against a naive loop, a confidence
map whose evidence sits in one quadrant, and the PR curve's points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx import metrics, plots
from featx.encoders import fisher_vector
from featx.windows import accumulate, cell_boxes, patch_fisher_scores, window_boxes


def test_window_boxes_follow_the_receptive_field_centres():
    # AlexNet's dense fc at 227 and 321 px: 1x1 and 4x4 maps at stride 32
    boxes = window_boxes([227, 321], [1, 16], 227)
    np.testing.assert_allclose(boxes[0], [[0, 0, 1, 1]])  # one 227-px window: the image
    b = boxes[1].reshape(4, 4, 4)
    assert (b[:, 0, 0] == 0).all() and (b[:, 3, 2] == 1).all()  # clipped to the image
    small = window_boxes([227, 321], [1, 16], 32)[1].reshape(4, 4, 4)
    stride = (321 - 227) / (4 - 1)  # how the map grows with the input (row_centres)
    centres = (321 / 2 + stride * (np.arange(4) - 1.5)) / 321
    np.testing.assert_allclose((small[0, :, 0] + small[0, :, 2]) / 2, centres)  # columns
    np.testing.assert_allclose((small[:, 0, 1] + small[:, 0, 3]) / 2, centres)  # rows
    np.testing.assert_allclose(small[..., 2] - small[..., 0], 32 / 321)


def test_accumulate_equals_a_naive_loop():
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(-0.1, 1.1, (30, 2, 2)), axis=1).transpose(0, 2, 1).reshape(30, 4)
    boxes = np.clip(boxes[:, [0, 1, 2, 3]], 0, 1)
    values = rng.normal(size=(30, 2))
    h, w = 7, 9
    got_mean, got_sum = accumulate(boxes, values, (h, w)), accumulate(boxes, values, (h, w), False)
    ref_sum, count = np.zeros((h, w, 2)), np.zeros((h, w))
    for (x0, y0, x1, y1), v in zip(boxes, values):
        for i in range(h):
            for j in range(w):
                cx, cy = (j + 0.5) / w, (i + 0.5) / h
                if x0 <= cx <= x1 and y0 <= cy <= y1:
                    ref_sum[i, j] += v
                    count[i, j] += 1
    ref_mean = np.where(count[..., None] > 0, ref_sum / np.maximum(count, 1)[..., None], 0)
    np.testing.assert_allclose(got_sum, ref_sum, atol=1e-12)
    np.testing.assert_allclose(got_mean, ref_mean, atol=1e-12)


def test_confidence_map_peaks_where_the_evidence_is():
    """A 3-scale pyramid whose vectors are 'object' (near GMM component 0) only where their
    window centre lies in the top-left quadrant; an SVM that scores the object's FV high. The
    map's maximum is in the top-left quadrant, and that quadrant's mean beats the others'."""
    rng = np.random.default_rng(0)
    d, k = 4, 2
    means = torch.tensor([[3.0] * d, [-3.0] * d])
    variances, priors = torch.ones(k, d), torch.tensor([0.5, 0.5])
    params = (means, variances, priors)
    sizes, counts = [227, 321, 454], [1, 16, 64]
    per_scale = window_boxes(sizes, counts, 227)
    xs = []
    for boxes in per_scale:
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        obj = (cx < 0.5) & (cy < 0.5)
        x = np.where(obj[:, None], 3.0, -3.0) + rng.normal(0, 0.3, (len(boxes), d))
        xs.append(torch.tensor(x, dtype=torch.float32))
    w = fisher_vector(torch.full((1, 1, d), 3.0), *params)[0] \
        - fisher_vector(torch.full((1, 1, d), -3.0), *params)[0]
    scores = patch_fisher_scores(torch.cat(xs), params, w[None].numpy(), np.zeros(1), block=7)
    ref = torch.stack([fisher_vector(v[None, None], *params)[0] @ w for v in torch.cat(xs)])
    np.testing.assert_allclose(scores[:, 0], ref.numpy(), rtol=1e-5, atol=1e-6)
    conf = accumulate(np.concatenate(per_scale), scores[:, 0], (32, 32))
    i, j = np.unravel_index(conf.argmax(), conf.shape)
    assert i < 16 and j < 16
    quads = [conf[:16, :16].mean(), conf[:16, 16:].mean(), conf[16:, :16].mean(),
             conf[16:, 16:].mean()]
    assert quads[0] > max(quads[1:])


def test_cell_boxes_tile_the_units():
    b = cell_boxes(2, 3, (1, 0), (4, 3))
    np.testing.assert_allclose(b[0], [0, 0.25, 1 / 3, 0.5])
    np.testing.assert_allclose(b[-1], [2 / 3, 0.5, 1, 0.75])


def test_pr_curve_draws_the_metrics_points(tmp_path):
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=40), rng.choice([1, -1, 0], 40)
    rec, prec = metrics.precision_recall(scores, labels)
    fig = plots.pr_figure(rec, prec, "cls: AP")
    line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), rec)
    np.testing.assert_array_equal(line.get_ydata(), prec)
    assert len(rec) == int((labels != 0).sum())  # one point per ranked, non-difficult image
    path = plots.pr_curve(rec, prec, "cls: AP", tmp_path / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_patch_window_is_the_fc_window_or_two_strides():
    from featx.windows import patch_window

    assert patch_window([227, 321, 454], [1, 16, 64], 227) == 227  # dense fc: the input window
    # a conv map (EfficientNet's head: 7x7 at 224, 14x14 at 448): stride 32, window 64
    assert patch_window([224, 317, 448], [49, 100, 196], 224) == 2 * (448 - 224) / (14 - 7)


def test_overlay_panels_share_one_scale_and_its_colour_bar():
    """Issue 28.8: every panel of a figure on one scale -- symmetric about 0, red positive,
    blue negative, white at 0 for scores; 0 to the largest value for activations -- and one
    colour bar that is that scale, labelled with the units."""
    photo = np.zeros((8, 12, 3), np.uint8)
    a, b = np.full((8, 12), -0.5), np.linspace(-3.0, 1.0, 96).reshape(8, 12)
    fig = plots.overlay_figure(photo, [("a", a), ("b", b)], signed=True, label="SVM score")
    heats = [ax.images[-1] for ax in fig.axes[1:3]]
    assert [im.get_clim() for im in heats] == [(-3.0, 3.0)] * 2
    assert {im.get_cmap().name for im in heats} == {"RdBu_r"}
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == "SVM score"
    assert bars[0].get_ylim() == (-3.0, 3.0)
    cmap = heats[0].get_cmap()
    assert np.allclose(cmap(0.5)[:3], 1.0, atol=0.05)  # white at 0
    assert cmap(1.0)[0] > cmap(1.0)[2] and cmap(0.0)[2] > cmap(0.0)[0]  # red +, blue -
    act = plots.overlay_figure(photo, [("c", np.abs(b)), ("d", np.abs(a))], signed=False,
                               label="activation")
    assert [ax.images[-1].get_clim() for ax in act.axes[1:3]] == [(0.0, 3.0)] * 2
    assert act.axes[1].images[-1].get_cmap().name == "Reds"


@pytest.mark.parametrize("shape", [(400, 300), (300, 400), (500, 200)])
def test_panel_titles_never_overlap_on_portrait_photos(shape):
    """Issue 38 (a newcomer trap): on a 3:4 photo the three panel titles ran into each other.
    Titles wrap to the panel and a panel widens to its longest line: drawn, no two titles'
    boxes overlap, and none is cut at the figure's edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    photo = np.zeros((*shape, 3), np.uint8)
    heat = np.zeros(shape)
    names = ["sunflowers (SVM score 0.523)\n= regions 0.41 + rest 0.11 + bias -0.2",
             "dandelion (SVM score -0.134)\n= regions -0.2 + rest 0.07 + bias -0.01",
             "supercalifragilisticexpialidocious-class (SVM score 1.25)"]
    fig = plots.overlay_figure(photo, [(n, heat) for n in names], title="an image id")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = sorted((ax.title.get_window_extent(renderer) for ax in fig.axes[:4]),
                   key=lambda b: b.x0)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 <= right.x0, (left, right)
    width = fig.get_size_inches()[0] * fig.dpi
    assert boxes[0].x0 >= 0 and boxes[-1].x1 <= width
    top = fig._suptitle.get_window_extent(renderer)
    assert all(b.y1 <= top.y0 for b in boxes)  # the figure's title above every panel's
