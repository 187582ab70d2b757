import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch

from bayesgan import metrics
from bayesgan.datasets import grid, ring
from bayesgan.metrics import (
    KEY_HIGH_QUALITY,
    KEY_MODE_COUNTS,
    KEY_MODES,
    KEY_REVERSE_KL,
    chi2_decile_score,
    mode_coverage,
    wasserstein_1d,
    wasserstein_2d,
)

HQ_CEILING = 1 - math.exp(-9 / 2)  # P(chi2_2 < 9) = 0.98889


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _pacgan_counts(samples, means, std, threshold):
    """A literal transcription of PacGAN's MetricLogger loop."""
    counts = np.zeros(len(means))
    for x in samples:
        distances = [math.sqrt(np.sum((x - m) ** 2 / std**2)) for m in means]
        if min(distances) < threshold:
            counts[int(np.argmin(distances))] += 1
    return counts


def test_exported_keys():
    keys = (metrics.KEY_MODES, metrics.KEY_HIGH_QUALITY, metrics.KEY_REVERSE_KL)
    assert keys == ("modes", "high_quality_fraction", "reverse_kl")
    assert all(hasattr(metrics, name) for name in metrics.__all__)


# Mode coverage: calibration on the true distributions (benchmarks.md section 1.5)


@pytest.mark.parametrize("target, num_modes, max_kl", [(ring(), 8, 0.006), (grid(), 25, 0.012)])
def test_mode_coverage_of_true_samples(target, num_modes, max_kl):
    samples = target.sample(2500, generator=_seeded(0), dtype=torch.float64)
    result = mode_coverage(samples, target.means, target.std)
    assert result[KEY_MODES] == num_modes
    assert result[KEY_HIGH_QUALITY] == pytest.approx(HQ_CEILING, abs=0.008)  # 4 binomial standard errors
    assert 0 < result[KEY_REVERSE_KL] < max_kl  # 2 n KL ~ chi2(K - 1); bound at its 99.9% quantile
    assert sum(result[KEY_MODE_COUNTS]) == round(result[KEY_HIGH_QUALITY] * 2500)


@pytest.mark.parametrize("target, expected, tolerance", [(ring(), 0.00143, 0.00025), (grid(), 0.00480, 0.0006)])
def test_mean_reverse_kl_is_k_minus_1_over_2n(target, expected, tolerance):
    samples = target.sample(200 * 2500, generator=_seeded(1), dtype=torch.float64).reshape(200, 2500, 2)
    kls = [mode_coverage(chunk, target.means, target.std)[KEY_REVERSE_KL] for chunk in samples]
    assert np.mean(kls) == pytest.approx(expected, abs=tolerance)  # 4 standard errors of the mean


def test_mode_coverage_matches_pacgan_loop():
    target = ring()
    samples = ring(std=0.03).sample(400, generator=_seeded(2), dtype=torch.float64).numpy()
    result = mode_coverage(samples, target.means, target.std)
    expected = _pacgan_counts(samples, target.means.numpy(), target.std, 3.0)
    assert 0 < expected.sum() < 400
    assert result[KEY_MODE_COUNTS] == expected.astype(int).tolist()
    assert result[KEY_HIGH_QUALITY] == expected.sum() / 400


def test_mode_coverage_chunks_give_the_same_counts(monkeypatch):
    target = grid()
    samples = grid(std=0.1).sample(300, generator=_seeded(3), dtype=torch.float64)
    whole = mode_coverage(samples, target.means, target.std)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 7)
    assert mode_coverage(samples, target.means, target.std) == whole


# Mode coverage: constructed cases


def test_all_samples_on_one_mode():
    target = ring()
    samples = target.means[3].repeat(50, 1)
    result = mode_coverage(samples, target.means, target.std)
    assert result[KEY_MODES] == 1 and result[KEY_HIGH_QUALITY] == 1.0
    assert result[KEY_REVERSE_KL] == pytest.approx(math.log(8), abs=1e-15)
    assert result[KEY_MODE_COUNTS] == [0, 0, 0, 50, 0, 0, 0, 0]


def test_samples_far_away_are_not_high_quality():
    target = ring()
    result = mode_coverage(torch.full((20, 2), 10.0), target.means, target.std)
    assert result[KEY_MODES] == 0 and result[KEY_HIGH_QUALITY] == 0.0
    assert result[KEY_REVERSE_KL] == math.inf


def test_hand_computed_histogram():
    means = [[0.0], [10.0], [20.0], [30.0]]
    samples = [[0.5], [-0.5], [10.0], [21.0], [35.0]]  # counts (2, 1, 1, 0); 35 is 5 stds from 30
    result = mode_coverage(samples, means, 1.0)
    assert result[KEY_MODE_COUNTS] == [2, 1, 1, 0]
    assert result[KEY_MODES] == 3 and result[KEY_HIGH_QUALITY] == 0.8
    assert result[KEY_REVERSE_KL] == pytest.approx(0.5 * math.log(2), abs=1e-15)


def test_threshold_is_strict_and_scaled_by_std():
    means = [[0.0, 0.0]]
    assert mode_coverage([[3.0, 0.0]], means, 1.0)[KEY_MODES] == 0
    assert mode_coverage([[2.999, 0.0]], means, 1.0)[KEY_MODES] == 1
    assert mode_coverage([[3.0, 0.0]], means, 1.0, threshold=3.5)[KEY_MODES] == 1
    assert mode_coverage([[3.0, 0.0]], means, 1.1)[KEY_MODES] == 1


def test_ties_go_to_the_first_mode():
    assert mode_coverage([[0.0]], [[-1.0], [1.0]], 1.0)[KEY_MODE_COUNTS] == [1, 0]


def test_mode_coverage_accepts_tensors_that_require_grad():
    samples = torch.zeros(3, 2, requires_grad=True)
    assert mode_coverage(samples, torch.zeros(1, 2), 0.1)[KEY_MODES] == 1


@pytest.mark.parametrize(
    "samples, means, std, threshold, message",
    [
        ([0.0, 1.0], [[0.0]], 1.0, 3.0, r"Expected samples of shape \[n, d\] with n >= 1, actual \[2\]"),
        (np.zeros((0, 2)), [[0.0, 0.0]], 1.0, 3.0, r"Expected samples of shape \[n, d\] with n >= 1, actual \[0, 2\]"),
        ([[0.0], [math.nan]], [[0.0]], 1.0, 3.0, r"Expected samples with no NaN, actual 1 bad entries"),
        ([[0.0]], [[math.inf]], 1.0, 3.0, r"Expected means with finite values, actual 1 bad entries"),
        ([[0.0]], [0.0], 1.0, 3.0, r"Expected means of shape \[n, d\] with n >= 1, actual \[1\]"),
        ([[0.0, 0.0]], [[0.0]], 1.0, 3.0, r"Expected samples and means of the same dimension, actual 2 and 1"),
        ([[0.0]], [[0.0]], 0.0, 3.0, r"Expected finite std > 0, actual 0.0"),
        ([[0.0]], [[0.0]], math.nan, 3.0, r"Expected finite std > 0, actual nan"),
        ([[0.0]], [[0.0]], math.inf, 3.0, r"Expected finite std > 0, actual inf"),
        ([[0.0]], [[0.0]], 1.0, -1.0, r"Expected finite threshold > 0, actual -1.0"),
    ],
)
def test_mode_coverage_value_errors(samples, means, std, threshold, message):
    with pytest.raises(ValueError, match=message):
        mode_coverage(samples, means, std, threshold=threshold)


# 1-D Wasserstein distance (benchmarks.md section 4.1)


def test_wasserstein_1d_scipy_documented_values():
    assert wasserstein_1d([0, 1, 3], [5, 6, 8]) == pytest.approx(5.0, abs=1e-12)
    assert wasserstein_1d([0, 1], [0, 1], [3, 1], [2, 2]) == pytest.approx(0.25, abs=1e-12)
    value = wasserstein_1d([3.4, 3.9, 7.5, 7.8], [4.5, 1.4], [1.4, 0.9, 3.1, 7.2], [3.2, 3.5])
    assert value == pytest.approx(4.0781331438047861, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_wasserstein_1d_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=rng.integers(1, 30)), rng.normal(1.0, 2.0, size=rng.integers(1, 30))
    if seed % 2:  # ties between and within the samples
        u, v = np.round(u), np.round(v)
    weights = (rng.uniform(size=u.size), rng.uniform(size=v.size)) if seed % 3 else (None, None)
    expected = scipy.stats.wasserstein_distance(u, v, *weights)
    assert wasserstein_1d(u, v, *weights) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    "p, q, expected",
    [((0.0, 1.0), (0.0, 2.0), 0.797885), ((0.0, 1.0), (1.0, 2.0), 1.166631), ((-1.0, 0.5), (2.0, 1.5), 3.000764)],
)
def test_wasserstein_1d_gaussian_closed_forms(p, q, expected):
    # Quantile grids of N(mu1, s1^2) and N(mu2, s2^2): benchmarks.md section 4.2
    z = scipy.stats.norm.ppf((np.arange(200_000) + 0.5) / 200_000)
    assert wasserstein_1d(p[0] + p[1] * z, q[0] + q[1] * z) == pytest.approx(expected, abs=2e-4)


def test_wasserstein_1d_point_masses_symmetry_and_zero_weights():
    assert wasserstein_1d([2.5], [-1.0]) == 3.5
    u, v = [0.0, 1.0, 5.0], [2.0, 3.0]
    assert wasserstein_1d(u, v) == wasserstein_1d(v, u)
    assert wasserstein_1d(u, v, [1.0, 1.0, 0.0]) == wasserstein_1d([0.0, 1.0], v)
    assert wasserstein_1d(torch.tensor(u), torch.tensor(u)) == 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        (([], [1.0]), r"Expected u as a non-empty 1-D array of finite values"),
        (([[1.0]], [1.0]), r"Expected u as a non-empty 1-D array of finite values"),
        (([1.0], [math.nan]), r"Expected v as a non-empty 1-D array of finite values"),
        (([1.0, 2.0], [1.0], [1.0]), r"Expected u weights of shape \[2\], actual \[1\]"),
        (([1.0], [1.0], None, [-1.0]), r"Expected finite non-negative v weights with a positive sum"),
        (([1.0], [1.0], [0.0]), r"Expected finite non-negative u weights with a positive sum"),
        (([1.0], [1.0], [math.inf]), r"Expected finite non-negative u weights with a positive sum"),
    ],
)
def test_wasserstein_1d_value_errors(args, message):
    with pytest.raises(ValueError, match=message):
        wasserstein_1d(*args)


# Point-cloud Wasserstein distance


@pytest.mark.parametrize("n, d, p", [(1, 2, 1), (3, 1, 2), (4, 2, 1.5), (5, 3, 1), (6, 2, 2)])
def test_wasserstein_2d_matches_brute_force(n, d, p):
    rng = np.random.default_rng(10 * n + d)
    x, y = rng.normal(size=(n, d)), rng.normal(1.0, 1.5, size=(n, d))
    perms = itertools.permutations(range(n))
    costs = [np.mean([np.linalg.norm(x[i] - y[j]) ** p for i, j in enumerate(perm)]) for perm in perms]
    brute = min(costs) ** (1 / p)
    assert wasserstein_2d(x, y, p=p) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_2d_of_shifted_clouds_is_the_shift(p):
    x = torch.randn(50, 2, generator=_seeded(4), dtype=torch.float64)
    shift = torch.tensor([3.0, -4.0], dtype=torch.float64)
    assert wasserstein_2d(x, x + shift, p=p) == pytest.approx(5.0, rel=1e-12)


def test_wasserstein_2d_in_1d_matches_sorted_coupling():
    rng = np.random.default_rng(5)
    u, v = rng.normal(size=40), rng.exponential(size=40)
    assert wasserstein_2d(u, v) == pytest.approx(wasserstein_1d(u, v), rel=1e-12)
    assert wasserstein_2d(u, v, p=2) == pytest.approx(np.sqrt(np.mean((np.sort(u) - np.sort(v)) ** 2)), rel=1e-12)


@pytest.mark.parametrize(
    "x, y, p, message",
    [
        (
            np.zeros((5, 2)),
            np.zeros((4, 2)),
            1,
            r"Expected x and y of equal size for the exact assignment, actual 5 and 4; subsample the larger cloud to 4",
        ),
        (np.zeros((4, 2)), np.zeros((4, 3)), 1, r"Expected x and y of the same dimension, actual 2 and 3"),
        (np.zeros((4, 2)), np.zeros((4, 2)), 0.5, r"Expected a finite order p >= 1, actual 0.5"),
        (np.zeros((4, 2)), np.zeros((4, 2)), math.inf, r"Expected a finite order p >= 1, actual inf"),
        (np.full((2, 2), math.nan), np.zeros((2, 2)), 1, r"Expected x with finite values, actual 4 bad entries"),
        (np.zeros((2, 2)), np.full((2, 2), math.inf), 1, r"Expected y with finite values, actual 4 bad entries"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2)), 1, r"Expected x of shape \[n, d\] with n >= 1, actual \[2, 2, 2\]"),
    ],
)
def test_wasserstein_2d_value_errors(x, y, p, message):
    with pytest.raises(ValueError, match=message):
        wasserstein_2d(x, y, p=p)


# Chi-square decile score (benchmarks.md section 5.4)


def test_chi2_decile_score_of_exact_samples_is_multinomial_noise():
    samples = torch.randn(20, 10_000, 2, generator=_seeded(6), dtype=torch.float64)
    scores = np.array([chi2_decile_score(s) for s in samples])
    assert 0.01 < scores[0] < 0.06  # 99.9% range of sqrt(chi2_9 / n)
    assert np.sqrt(np.mean(scores**2)) == pytest.approx(0.03, abs=0.005)  # E[score^2] = 9 / n


def test_chi2_decile_score_of_a_too_wide_sampler():
    # For N(0, 4 I_2) the squared norm is 4 chi2_2: bin j has probability (1 - j/10)^(1/4) - (1 - (j+1)/10)^(1/4).
    edges = (1 - np.arange(11) / 10) ** 0.25
    expected = np.sqrt(np.mean((10 * (edges[:-1] - edges[1:]) - 1) ** 2))
    samples = 2 * torch.randn(10_000, 2, generator=_seeded(7), dtype=torch.float64)
    assert expected > 1.0
    assert chi2_decile_score(samples) == pytest.approx(expected, abs=0.05)


def test_chi2_decile_score_constructed_counts():
    midpoints = np.sqrt(scipy.stats.chi2.ppf((np.arange(10) + 0.5) / 10, 2))
    exact = np.stack([midpoints, np.zeros(10)], axis=-1).repeat(3, axis=0)
    assert chi2_decile_score(exact) == 0.0
    assert chi2_decile_score(np.zeros((50, 2))) == pytest.approx(3.0, abs=1e-15)  # counts (50, 0, ..., 0)
    quarters = np.sqrt(scipy.stats.chi2.ppf([0.1, 0.2, 0.6, 0.9], 3))[:, None] * np.array([[1.0, 0.0, 0.0]])
    assert chi2_decile_score(quarters, num_bins=4) == pytest.approx(math.sqrt(0.5), abs=1e-15)  # counts (2, 0, 1, 1)


def test_chi2_decile_bins_are_closed_on_the_left():
    # As numpy.histogram and torch.histogram: a squared norm equal to a decile goes to the bin above it.
    edge = scipy.stats.chi2.ppf(0.2, 1)
    roots = [np.nextafter(np.sqrt(edge), direction) for direction in (-np.inf, np.inf)] + [np.sqrt(edge)]
    exact = [r for r in roots if r * r == edge]
    if not exact:
        pytest.skip("no float squares exactly to the decile")
    midpoints = np.sqrt(scipy.stats.chi2.ppf((np.arange(10) + 0.5) / 10, 1))
    midpoints[1] = exact[0]  # counts (1, 0, 2, 1, ..., 1)
    assert chi2_decile_score(midpoints[:, None]) == pytest.approx(math.sqrt(0.2), abs=1e-15)


@pytest.mark.parametrize(
    "samples, num_bins, message",
    [
        (np.zeros((10, 2)), 1, r"Expected num_bins to be an integer >= 2, actual 1"),
        (np.zeros((10, 2)), 2.5, r"Expected num_bins to be an integer >= 2, actual 2.5"),
        (np.zeros((10, 2)), True, r"Expected num_bins to be an integer >= 2, actual True"),
        (np.zeros(10), 10, r"Expected samples of shape \[n, d\] with n >= 1, actual \[10\]"),
        (np.full((3, 2), math.nan), 10, r"Expected samples with no NaN, actual 6 bad entries"),
    ],
)
def test_chi2_decile_score_value_errors(samples, num_bins, message):
    with pytest.raises(ValueError, match=message):
        chi2_decile_score(samples, num_bins=num_bins)
