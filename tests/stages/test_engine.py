"""featx.inference.Engine: the one forward pass extraction runs. A 20-line sink of its own
(below) gets from the engine, on the same decoded views, the arrays the extract stage wrote
-- bitwise; and the precision is explicit and recorded."""

from __future__ import annotations

import numpy as np
import torch

import featx
from featx.backbones import get_backbone, load_model
from featx.images import ViewSpec, decode
from featx.inference import Engine, compute_precision
from featx.io import read_header
from featx.io.shards import ActivationShard


class ListSink:
    """The smallest sink: what an engine gives for each batch, kept in memory."""

    def __init__(self, engine: Engine):
        self.engine, self.grid, self.pyramid = engine, [], []

    def batch(self, views: torch.Tensor, scales: list[torch.Tensor] = ()) -> None:
        with torch.inference_mode():
            self.grid.append({k: v.cpu().numpy() for k, v in self.engine.grid(views).items()})
            self.pyramid.append([{k: v.cpu().numpy() for k, v in
                                  self.engine.pyramid(x).items()} for x in scales])

    def layer(self, name: str) -> np.ndarray:
        return np.concatenate([g[name] for g in self.grid])


def test_a_sink_of_its_own_gets_what_extract_wrote(make_images, tmp_path):
    images = make_images(3)
    [shard] = featx.extract(images, tmp_path / "acts", weights="none", layers="conv4,conv5",
                            views="whole", workers=0, dtype="float32", verbose=False)
    bb = get_backbone("alexnet")
    model, _ = load_model(bb, "none", 0)
    engine = Engine(model, bb, torch.device("cpu"), layers=["conv4", "conv5"],
                    store_dtype=torch.float32)
    sink = ListSink(engine)
    whole = ViewSpec.parse("whole")
    for path in sorted(images.iterdir()):
        sink.batch(whole.render(decode(path, whole.min_decode_size(227, bb.jitter_size)),
                                227, bb.jitter_size, bb.interpolation))
    with ActivationShard(shard) as acts:
        for layer in ("conv4", "conv5"):
            np.testing.assert_array_equal(acts.read("whole", layer)[:, 0], sink.layer(layer))
    assert read_header(shard)["compute"] == "float32" == engine.compute


def test_the_precision_is_the_devices_and_explicit():
    assert compute_precision(torch.device("cpu")) == "float32"
    assert compute_precision(torch.device("cuda", 0)) == "float16-autocast"
    bb = get_backbone("alexnet")
    model, _ = load_model(bb, "none", 0)
    try:
        Engine(model, bb, torch.device("cpu"), layers=["conv5"], compute="int4")
    except ValueError as exc:
        assert "compute precision 'int4'" in str(exc)
    else:
        raise AssertionError("an unknown precision was taken")
