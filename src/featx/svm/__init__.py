"""One-vs-rest linear SVMs on wide encodings, trained through the linear kernel -- a package
by job: :mod:`~featx.svm.dual` (the Gram matrix and libsvm's SMO), :mod:`~featx.svm.newton`
(Newton on any loss of :mod:`~featx.svm.losses`), :mod:`~featx.svm.selection` (how C is
chosen), :mod:`~featx.svm.probability`, :mod:`~featx.svm.scaling` (standardisation) and
:mod:`~featx.svm.scoring`; every name is re-exported here.

Encodings are wide (65k-256k dims) and training sets small (5k-10k images), so the fast path is
the Gram matrix K = X X^T -- one GEMM (SYRK on the CPU, on the GPU when present) -- and a dual
solver per class on it (Liu et al. §4.1): libsvm's SMO through scikit-learn's
``SVC(kernel='precomputed')``, which minimises the hinge loss with L2 regularisation and an
unregularised bias, exactly the linear SVM. The primal weights are then recovered as
w_c = sum_i alpha_ci y_ci x_i, so scoring new encodings is one GEMM as well.

Encodings need not fit in memory: :func:`gram_blocks` builds K from row blocks (X_i X_j^T for
every pair of blocks, block i held while blocks j <= i stream past) and :func:`primal` the
weights W = A X from one more pass, so memory is bounded by two blocks and the n x n matrix.

Neither paper gives C: :func:`choose_c` picks it by k-fold cross-validation on the training
Gram matrix (``train-svm --C auto`` or a list), which costs SVM fits only, no new products.

Multi-label (VOC): one binary problem per class from labels in {1, -1, 0}; images labelled 0
(difficult) are left out of that class's training by default. Single-label: class c against the
rest; prediction is the argmax of the scores.
"""

from featx.configs import AUTO_C  # noqa: F401 (the --C auto grid, re-exported)
from featx.svm.dual import binary_targets, fit_dual, gram, gram_blocks, primal, targets, train_ovr
from featx.svm.losses import LOSSES, Hinge, Logistic, Loss, Multinomial, SquaredHinge
from featx.svm.newton import PRIMAL_TOL, KernelProblem, PrimalProblem, check_both_labels
from featx.svm.newton import fit_primal, primal_objective
from featx.svm.probability import of_model as model_probabilities, platt, probabilities
from featx.svm.scaling import fold_standardization, moments, standardized
from featx.svm.scoring import row_digests, scores
from featx.svm.selection import best_c, choose, choose_c, choose_c_primal, cv_score, cv_splits
from featx.svm.selection import fold_count, held_out_loss

__all__ = ["AUTO_C", "LOSSES", "PRIMAL_TOL", "Hinge", "KernelProblem", "Logistic", "Loss",
           "Multinomial", "PrimalProblem", "SquaredHinge", "best_c", "binary_targets",
           "check_both_labels", "choose", "choose_c", "choose_c_primal", "cv_score", "cv_splits",
           "fit_dual", "fit_primal", "fold_count", "fold_standardization", "gram", "gram_blocks",
           "held_out_loss", "model_probabilities", "moments", "platt", "primal", "primal_objective", "probabilities",
           "row_digests", "scores", "standardized", "targets", "train_ovr"]
