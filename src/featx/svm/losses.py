"""The losses: per (image, class) values, derivatives and curvature in the decision values (hinge, squared hinge, logistic, multinomial), by name in :data:`LOSSES`."""

from __future__ import annotations

import torch


class Loss:
    """A loss of decision values z (n, C) against targets y in {1, -1} with weights s (0:
    left out), float64 tensors: ``rows`` its values (n, C) (summed: the data term of the
    objective), ``dz`` its derivative in z, ``curvature`` what :meth:`hess` needs for the
    Hessian in z times u. ``joint``: the classes share one problem (the multinomial loss);
    otherwise each class is a problem of its own."""

    joint = False

    def rows(self, y, s, z):
        raise NotImplementedError

    def dz(self, y, s, z):
        raise NotImplementedError

    def curvature(self, y, s, z):
        raise NotImplementedError

    def hess(self, curv, u):
        return curv * u


class Hinge(Loss):
    """max(0, 1 - y z): the dual solver's loss (held-out values only: libsvm trains it)."""

    def rows(self, y, s, z):
        return s * (1 - y * z).clamp_min(0)


class SquaredHinge(Loss):
    """max(0, 1 - y z)^2: LIBLINEAR's L2-loss SVM, the primal solver's SVM loss."""

    def rows(self, y, s, z):
        m = (1 - y * z).clamp_min(0)
        return s * m * m

    def dz(self, y, s, z):
        return -2 * (s * y * (1 - y * z).clamp_min(0))

    def curvature(self, y, s, z):
        return 2 * (s * ((1 - y * z) > 0))


class Logistic(Loss):
    """log(1 + exp(-y z)), each class against the rest: P(class c) = sigmoid(z_c)."""

    def rows(self, y, s, z):
        return s * torch.nn.functional.softplus(-y * z)

    def dz(self, y, s, z):
        return -s * y * torch.sigmoid(-y * z)

    def curvature(self, y, s, z):
        p = torch.sigmoid(z)
        return s * p * (1 - p)


class Multinomial(Loss):
    """-log softmax(z)_label: one problem over every class (single-label data only); an
    image's weight is its s (equal across classes). P(class c) = softmax(z)_c."""

    joint = True

    def rows(self, y, s, z):
        picked = (z * (y > 0)).sum(1, keepdim=True)
        return s[:, :1] * (torch.logsumexp(z, 1, keepdim=True) - picked)

    def dz(self, y, s, z):
        return s * (torch.softmax(z, 1) - (y > 0).double())

    def curvature(self, y, s, z):
        return s, torch.softmax(z, 1)

    def hess(self, curv, u):
        s, p = curv
        pu = p * u
        return s * (pu - p * pu.sum(1, keepdim=True))


# every loss by the name ``svm.h5`` records
LOSSES: dict[str, Loss] = {"hinge": Hinge(), "squared hinge": SquaredHinge(),
                           "logistic": Logistic(), "multinomial": Multinomial()}
