"""maps: a channel overlay is the layer's channels accumulated on the image grid
(featx.windows), the top channels by mean activation, for each image drawn."""

from __future__ import annotations

import numpy as np

from featx.io import ActivationShard, load_maps
from featx.stages import maps as stage
from featx.stages.maps import MapsConfig
from featx.windows import accumulate, cell_boxes


def test_channel_overlays_are_the_layers_channels_accumulated(labelled, tmp_path):
    cfg = MapsConfig(layer="conv5", top=2, limit=2, device="cpu")
    written = stage.run(labelled.grid, tmp_path / "maps", cfg)
    assert [p.suffix for p in written] == [".png", ".png", ".h5"]
    raw, attrs = load_maps(written[-1])
    with ActivationShard(labelled.grid[0]) as shard:
        first_id, a = shard.ids[0], shard.read("whole", "conv5", slice(0, 1))[0, 0]
    assert attrs["ids"][0] == first_id
    chosen = list(np.argsort(-a.mean((1, 2)), kind="stable")[:2])
    h, w = a.shape[1:]
    grid = stage._grid((64, 80), cfg.resolution)  # the 80 x 64 photo's grid
    want = accumulate(cell_boxes(h, w, (0, 0), (h, w)), a.reshape(a.shape[0], -1).T[:, chosen],
                      grid)
    got = raw[first_id]
    assert attrs["panels"][0] == [f"conv5 channel {c}" for c in chosen]
    np.testing.assert_allclose(got, np.moveaxis(want, -1, 0), rtol=1e-6)
