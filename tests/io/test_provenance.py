"""Provenance: the attributes every output records, require_fit's messages, and resume."""

from __future__ import annotations

import numpy as np
import pytest

import featx
from featx.errors import OutputExistsError, ProvenanceError
from featx.io import ActivationWriter, provenance, require_fit, resume_or_refuse


def test_provenance_records_version_and_command():
    attrs = provenance(command="featx x", layer="conv4")
    assert attrs == {"featx_version": featx.__version__, "command": "featx x", "layer": "conv4"}


def test_require_fit_names_the_attribute_and_the_fix():
    require_fit({"backbone": "alexnet", "layers": ["conv4"]}, {"backbone": "alexnet"}, "x")
    with pytest.raises(ProvenanceError, match=r"^pca.h5 has backbone='vgg16', this run needs "
                                              r"backbone='alexnet'; refit it$"):
        require_fit({"backbone": "vgg16"}, {"backbone": "alexnet"}, "pca.h5", "refit it")


def test_resume_or_refuse(tmp_path):
    target = tmp_path / "shard-00000.h5"
    assert resume_or_refuse(target, {"layers": ["conv5"]}, ["a", "b"]) is None
    w = ActivationWriter(target, {"layers": ["conv5"]}, label_kind=None)
    w.append(["a"], {("whole", "conv5"): np.zeros((1, 1, 2))}, {})
    w.skip("b", "cannot decode image b")
    w.commit()
    assert resume_or_refuse(target, {"layers": ["conv5"]}, ["b", "a"])["ids"] == ["a"]
    with pytest.raises(OutputExistsError, match="has layers=\\['conv5'\\], this run needs "
                                                "layers=\\['conv4'\\]; pass --overwrite"):
        resume_or_refuse(target, {"layers": ["conv4"]}, ["a", "b"])
    with pytest.raises(OutputExistsError, match="other images"):
        resume_or_refuse(target, {"layers": ["conv5"]}, ["a", "c"])
