"""train-svm trains what featx.svm trains on the Gram matrix, C chosen by the same
cross-validation."""

from __future__ import annotations

import numpy as np
import torch

from featx import svm
from featx.io import load_svm
from featx.io.provenance import ENCODING_KEYS
from featx.io.shards import EncodingSet


def test_train_svm_is_featx_svm_on_the_gram_matrix(labelled, trained):
    weights, biases, attrs = load_svm(trained)
    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    blocks = lambda: enc.blocks(len(enc))  # noqa: E731
    kernel = svm.gram_blocks(blocks, len(enc), torch.device("cpu"))
    c, cv = svm.choose_c(kernel, enc.labels, 3, (0.01, 1.0), 2, False, 0)
    coefs, b = svm.fit_dual(kernel, enc.labels, 3, c, False)
    assert attrs["C"] == c and attrs["cv_scores"] == [[k, v] for k, v in cv.items()]
    np.testing.assert_allclose(weights, svm.primal(coefs, blocks), atol=1e-6)
    np.testing.assert_allclose(biases, b, atol=1e-6)
