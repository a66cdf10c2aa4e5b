"""The extract stage stores the backbone's forward pass of each view, image by image."""

from __future__ import annotations

import numpy as np
import torch

from featx.backbones import ActivationExtractor, get_backbone, load_model
from featx.images import ViewSpec, decode, normalize_pixels
from featx.io import ActivationShard


def test_stored_activations_are_the_backbones_forward_of_each_view(labelled):
    bb = get_backbone("alexnet")
    model, _ = load_model(bb, "none", 0)  # extract's seed 0: the same random weights
    net = ActivationExtractor(model.eval(), bb, ["conv4", "conv5"])
    with ActivationShard(labelled.grid[1]) as shard:
        ids, paths = shard.ids, shard.paths
        stored = {(v, x): shard.read(v, x, slice(0, 2)) for v in ("whole", "blocks")
                  for x in ("conv4", "conv5")}
    assert len(ids) == 5 and len(labelled.grid) == 2  # 12 images, 7 a shard
    for view in ("whole", "blocks"):
        spec = ViewSpec.parse(view)
        for i in range(2):
            img = decode(paths[i], spec.min_decode_size(96, bb.jitter_size), None)
            x = spec.render(img, 96, bb.jitter_size, bb.interpolation)
            with torch.inference_mode():
                ref = net(normalize_pixels(x, bb.mean, bb.std, bb.bgr))
            for layer in ("conv4", "conv5"):
                got = stored[(view, layer)][i].astype(np.float32)
                want = ref[layer].numpy()
                assert got.shape == want.shape == (spec.count(), *want.shape[1:])
                # float16 storage: within its rounding of the largest value
                np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
