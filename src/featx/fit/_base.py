"""What both estimators share: input validation (numpy the scikit-learn way, torch tensors
as they are), seeds from ``random_state``, and the device."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from featx.errors import InputError


def as_samples(estimator, x, *, reset: bool, min_samples: int = 1
               ) -> tuple[torch.Tensor, bool]:
    """(N, D) samples as a tensor on the estimator's device, and whether they came as numpy.

    numpy input goes through scikit-learn's ``validate_data`` (dtype, shape, NaN/Inf,
    ``n_features_in_``); float64 stays float64 so that scoring keeps its precision. Torch
    tensors are checked here and kept in float32.
    """
    device = torch.device(estimator.device)
    if isinstance(x, torch.Tensor):
        if x.ndim != 2:
            raise InputError(f"expected a 2-d array of samples x features, got shape "
                             f"{tuple(x.shape)}")
        if reset:
            estimator.n_features_in_ = x.shape[1]
        elif x.shape[1] != estimator.n_features_in_:
            raise InputError(f"X has {x.shape[1]} features, but {type(estimator).__name__} is "
                             f"expecting {estimator.n_features_in_} features as input")
        if x.shape[0] < min_samples:
            raise InputError(f"{x.shape[0]} sample(s) given, at least {min_samples} needed")
        x = x.to(device=device, dtype=torch.float32)
        if not torch.isfinite(x).all():
            raise InputError("the samples contain NaN or Inf values")
        return x, False
    arr = validate_data(estimator, x, reset=reset, dtype=[np.float64, np.float32],
                        ensure_min_samples=min_samples)
    # a read-only array (a memmap, say) is copied: torch tensors are writable views
    return torch.from_numpy(np.require(arr, requirements=["W"])).to(device), True


def seed_of(random_state) -> int:
    """An int seed from ``random_state``: None, an int, a numpy Generator or RandomState."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**62))
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**62))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    raise InputError(f"random_state must be None, an int or a numpy Generator, got "
                     f"{type(random_state).__name__}")


def batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
