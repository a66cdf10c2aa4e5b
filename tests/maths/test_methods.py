"""The encode-method registry: entries, refusals, and the plan's joining of blocks."""

from __future__ import annotations

import pytest
import torch

from featx.encoders import normalize
from featx.errors import InputError
from featx.methods import METHODS, Context, EncodePlan, get_methods, method


def test_registry_lists_both_papers_methods():
    assert set(METHODS) == {"cross-layer", "max", "sum-sqrt", "spp", "global", "jitter",
                            "centre", "crops", "fisher", "vlad", "mpp", "nfk", "csf", "mpp-sp",
                            "cross-layer-guided"}
    assert METHODS["cross-layer-guided"].reads == ("region",)
    assert METHODS["cross-layer-guided"].view == "pyramid"
    assert METHODS["mpp"].view == "pyramid" and METHODS["mpp"].needs == {"gmm"}
    assert METHODS["cross-layer"].reads == ("local", "guide") and METHODS["cross-layer"].view is None


def test_registering_twice_or_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        method("mpp", reads=("fisher",))(lambda ctx, x: x)
    with pytest.raises(ValueError, match="unknown roles"):
        method("new", reads=("pixels",))
    with pytest.raises(InputError, match="unknown method 'nope'; valid: cross-layer"):
        get_methods(["nope"])


def test_plan_blocks_and_join():
    plan = EncodePlan(get_methods(["global", "jitter"]), ("whole",),
                      Context(layers={"fc": "fc7"}))
    assert [(m.name, v) for m, v in plan.blocks] == [("global", "whole"), ("jitter", "jitter")]
    assert plan.reads() == {("whole", "fc7"), ("jitter", "fc7")}
    g = torch.rand(2, 1, 5)
    j = torch.rand(2, 10, 5)
    blocks = plan.encode_blocks({("whole", "fc7"): g, ("jitter", "fc7"): j})
    # the fc baselines' own normalisation is L2 alone (Yoo et al. Table 2)
    torch.testing.assert_close(blocks[0], normalize(g.mean(1), power=False))
    torch.testing.assert_close(blocks[1], normalize(j.mean(1), power=False))
    assert plan.normalisation() == ["l2", "l2"]
    forced = EncodePlan(plan.methods, ("whole",), plan.context, power_norm=True)
    torch.testing.assert_close(forced.encode_blocks({("whole", "fc7"): g,
                                                     ("jitter", "fc7"): j})[0],
                               normalize(g.mean(1)))
    assert forced.normalisation() == ["sqrt+l2", "sqrt+l2"]
    joined = plan.join(blocks)
    torch.testing.assert_close(joined.norm(dim=1), torch.ones(2))
