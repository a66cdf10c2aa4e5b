"""featx.fit: PCA against scikit-learn, the diagonal GMM against known mixtures and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA as SkPCA
from sklearn.mixture import GaussianMixture as SkGMM

from featx.errors import InputError
from featx.fit import PCA, GaussianMixture, kmeans_pp


def correlated(n=5000, d=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8)) * np.linspace(5, 1, 8)
    return (latent @ rng.normal(size=(8, d)) + 0.3 * rng.normal(size=(n, d)) + 7.0).astype(np.float32)


def mixture(n=40000, k=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 6, (k, d))
    variances = rng.uniform(0.3, 2.0, (k, d))
    priors = rng.dirichlet(np.full(k, 8.0))
    z = rng.choice(k, n, p=priors)
    x = means[z] + rng.normal(size=(n, d)) * np.sqrt(variances[z])
    return x.astype(np.float32), means, variances, priors


def test_pca_matches_sklearn():
    x = correlated()
    # the 8 signal directions: distinct eigenvalues, so each component is well defined (the
    # noise directions beyond them are near-degenerate and their eigenvectors are not)
    ours = PCA(n_components=8, device="cpu").fit(x)
    ref = SkPCA(n_components=8, svd_solver="covariance_eigh").fit(x.astype(np.float64))
    comps = ours.components_.numpy()
    signs = np.sign((comps * ref.components_).sum(1))
    np.testing.assert_allclose(comps * signs[:, None], ref.components_, atol=1e-4)
    np.testing.assert_allclose(ours.explained_variance_.numpy(), ref.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose(ours.mean_.numpy(), ref.mean_, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ours.explained_variance_ratio_.numpy(),
                               ref.explained_variance_ratio_, rtol=1e-5)
    # sign convention: each component's largest-magnitude coefficient is positive
    assert (comps[np.arange(8), np.abs(comps).argmax(1)] > 0).all()
    y = ours.transform(x)
    assert isinstance(y, np.ndarray)  # numpy in, numpy out (scikit-learn's contract)
    np.testing.assert_allclose(y * signs, ref.transform(x), atol=1e-3)
    yt = ours.transform(torch.from_numpy(x))  # tensors stay tensors
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)


def test_pca_whitening_and_inverse():
    x = correlated(seed=1)
    pca = PCA(n_components=40, whiten=True, device="cpu").fit(x)
    y = pca.transform(x)
    np.testing.assert_allclose(y.var(0, ddof=1), np.ones(40), rtol=1e-3)
    np.testing.assert_allclose(pca.inverse_transform(y), x, atol=2e-3)


def test_pca_errors():
    with pytest.raises(InputError, match="too few"):
        PCA(n_components=10, device="cpu").fit(np.ones((10, 20), np.float32) + np.eye(10, 20))
    with pytest.raises(InputError, match="zero variance"):
        PCA(n_components=2, device="cpu").fit(np.ones((50, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        PCA(n_components=2, device="cpu").fit(np.full((50, 4), np.nan, np.float32))
    with pytest.raises(InputError, match="NaN or Inf"):
        PCA(n_components=2, device="cpu").fit(torch.full((50, 4), torch.nan))
    with pytest.raises(InputError, match="n_components=5 does not fit data of 4 feature"):
        PCA(n_components=5, device="cpu").fit(np.random.rand(50, 4))


def test_gmm_recovers_a_known_mixture():
    x, means, variances, priors = mixture()
    gmm = GaussianMixture(n_components=6, tol=1e-5, max_iter=300, device="cpu", random_state=1).fit(x)
    # match components to the truth by their means
    order = [int(np.argmin(((gmm.means_.numpy() - m) ** 2).sum(1))) for m in means]
    assert sorted(order) == list(range(6))
    np.testing.assert_allclose(gmm.means_.numpy()[order], means, atol=0.1)
    np.testing.assert_allclose(gmm.variances_.numpy()[order], variances, rtol=0.1)
    np.testing.assert_allclose(gmm.priors_.numpy()[order], priors, atol=0.01)
    assert gmm.converged_ and np.all(np.diff(gmm.history_) > -1e-4)  # EM never goes down


def test_gmm_log_likelihood_matches_sklearn_from_the_same_start():
    rng = np.random.default_rng(5)
    # overlapping, heavy-tailed clusters: EM needs many iterations here
    centres = rng.normal(0, 2, (20, 6))
    x = (centres[rng.integers(0, 20, 20000)] + rng.standard_t(3, (20000, 6))).astype(np.float32)
    init = x[rng.choice(len(x), 12, replace=False)]
    ref = SkGMM(12, covariance_type="diag", means_init=init, max_iter=50, tol=1e-4,
                reg_covar=1e-6).fit(x)
    ours = GaussianMixture(n_components=12, means_init=init, max_iter=50, tol=1e-4,
                           var_floor=1e-7, device="cpu", random_state=0).fit(x)
    assert abs(ours.score(x) - ref.score(x)) <= 0.005 * abs(ref.score(x))
    # score and predict_proba agree with scikit-learn on the fitted parameters
    twin = SkGMM(12, covariance_type="diag")
    twin.weights_, twin.means_ = ours.priors_.double().numpy(), ours.means_.double().numpy()
    twin.covariances_ = ours.variances_.double().numpy()
    twin.precisions_cholesky_ = 1 / np.sqrt(twin.covariances_)
    np.testing.assert_allclose(ours.score(x), twin.score(x), rtol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(x[:500]), twin.predict_proba(x[:500]),
                               atol=1e-4)


def test_gmm_default_fit_matches_sklearns_default_on_held_out_data():
    # featx's own initialisation (k-means++ seeding, a few Lloyd steps on a subsample), one
    # run, no restarts, against scikit-learn's default k-means initialisation
    rng = np.random.default_rng(6)
    centres, scales = rng.normal(0, 1.5, (40, 8)), rng.uniform(0.3, 1.5, (40, 8))
    z = rng.integers(0, 40, 24000)
    x = (centres[z] + scales[z] * rng.standard_t(3, (24000, 8))).astype(np.float32)
    train, held = x[:20000], x[20000:]
    ref = SkGMM(16, covariance_type="diag", random_state=0).fit(train).score(held)
    for seed in (0, 1):
        ours = GaussianMixture(n_components=16, random_state=seed, device="cpu").fit(train)
        assert ours.converged_
        assert ours.score(held) >= ref - 0.005 * abs(ref)


def test_variance_floor_holds():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 4)).astype(np.float32) * np.float32(10)
    x[:1000, 0] = 3.0  # a cluster with no spread at all in dimension 0
    gmm = GaussianMixture(n_components=3, var_floor=1e-3, device="cpu", max_iter=30, random_state=0).fit(x)
    floor = 1e-3 * x.var(0).max()
    assert gmm.var_floor_ == pytest.approx(floor, rel=1e-4)
    assert gmm.variances_.min().item() >= gmm.var_floor_ * (1 - 1e-6)
    assert np.isfinite(gmm.score(x))


def test_empty_component_is_reseeded(caplog):
    x, *_ = mixture(n=5000, k=3, d=2, seed=3)
    init = np.array([[0.0, 0.0], [1.0, 1.0], [1e4, 1e4]], np.float32)  # the last is far away
    gmm = GaussianMixture(n_components=3, means_init=init, max_iter=50, device="cpu", random_state=0)
    with caplog.at_level("WARNING", logger="featx"):
        gmm.fit(x)
    assert "re-seeding 1 empty component" in caplog.text
    assert np.abs(gmm.means_.numpy()).max() < 100  # no component left stranded
    post = gmm.predict_proba(x).sum(0)
    assert (post > 50).all()  # every component explains data again


def test_gmm_errors_and_determinism():
    x, *_ = mixture(n=400, k=2, d=3)
    with pytest.raises(InputError, match="too few for 256 components"):
        GaussianMixture(n_components=256, device="cpu", random_state=0).fit(x)
    with pytest.raises(InputError, match="zero variance"):
        GaussianMixture(n_components=2, device="cpu", random_state=0).fit(np.zeros((100, 3)))
    a = GaussianMixture(n_components=2, random_state=7, device="cpu").fit(x)
    b = GaussianMixture(n_components=2, random_state=7, device="cpu").fit(x)
    assert torch.equal(a.means_, b.means_)


def test_kmeans_pp_spreads_the_centres():
    x, means, *_ = mixture(n=6000, k=4, d=2, seed=4)
    c = kmeans_pp(torch.from_numpy(x), 4, torch.Generator().manual_seed(0))
    nearest = [int(np.argmin(((means - ci.numpy()) ** 2).sum(1))) for ci in c]
    assert sorted(nearest) == [0, 1, 2, 3]  # one seed in each true cluster
