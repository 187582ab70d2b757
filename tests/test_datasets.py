import itertools
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from bayesgan import datasets
from bayesgan.datasets import (
    GaussianMixture,
    SwissRoll,
    batches,
    fixed_dataset,
    gaussian_1d,
    get,
    grid,
    mixture_1d,
    names,
    ring,
    standard_normal_2d,
    swiss_roll,
)

ALL_NAMES = ["gaussian_1d", "grid", "mixture_1d", "normal_2d", "ring", "swiss_roll"]
MIXTURE_NAMES = ["gaussian_1d", "grid", "mixture_1d", "normal_2d", "ring"]


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _mixture_moments(target):
    """Exact mean and covariance of an isotropic Gaussian mixture."""
    w, mu, s = target.weights, target.means, target.stds
    mean = w @ mu
    second = torch.einsum("k,ki,kj->ij", w, mu, mu) + (w * s**2).sum() * torch.eye(target.dim, dtype=torch.float64)
    return mean, second - torch.outer(mean, mean)


def _scipy_log_prob(target, x):
    terms = [
        math.log(w) + scipy.stats.multivariate_normal(m, s**2 * np.eye(target.dim)).logpdf(x)
        for w, m, s in zip(target.weights.tolist(), target.means.numpy(), target.stds.tolist())
    ]
    return scipy.special.logsumexp(np.stack(terms, axis=-1).reshape(len(x), -1), axis=-1)


# Registry


def test_all_is_explicit_and_resolves():
    assert all(hasattr(datasets, name) for name in datasets.__all__)


def test_names_are_sorted_and_complete():
    assert names() == ALL_NAMES


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Expected a target name in \['gaussian_1d'.*'swiss_roll'\], actual 'moons'"):
        get("moons")


def test_get_passes_keyword_arguments():
    target = get("ring", num_modes=4, radius=2.0)
    assert target.means.shape == (4, 2)
    assert torch.allclose(target.means.norm(dim=-1), torch.full((4,), 2.0, dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_registry_name_matches_target_name(name):
    assert get(name).name == name


# Sampling


@pytest.mark.parametrize("name", ALL_NAMES)
def test_sample_shape_dtype_and_reproducibility(name):
    target = get(name)
    x = target.sample(7, generator=_seeded(1))
    assert x.shape == (7, target.dim) and x.dtype == torch.float32
    x64 = target.sample(7, generator=_seeded(1), dtype=torch.float64)
    assert x64.dtype == torch.float64
    assert torch.equal(x64, target.sample(7, generator=_seeded(1), dtype=torch.float64))
    assert torch.equal(x, x64.float())
    assert not torch.equal(x64, target.sample(7, generator=_seeded(2), dtype=torch.float64))


@pytest.mark.parametrize("name", MIXTURE_NAMES)
def test_sample_moments_match_exact_moments(name):
    target, n = get(name), 20_000
    x = target.sample(n, generator=_seeded(3), dtype=torch.float64)
    mean, cov = _mixture_moments(target)
    scale = cov.diagonal().max().item()
    assert torch.allclose(x.mean(0), mean, atol=5 * math.sqrt(scale / n))
    assert torch.allclose(torch.cov(x.T).reshape(target.dim, target.dim), cov, atol=6 * scale * math.sqrt(2 / n))


def test_mixture_1d_exact_moments_are_the_reference_values():
    mean, cov = _mixture_moments(mixture_1d())
    assert mean.item() == pytest.approx(0.75, abs=1e-12)
    assert math.sqrt(cov.item()) == pytest.approx(1.2698, abs=5e-5)


def test_ring_and_grid_covariances():
    assert torch.allclose(_mixture_moments(ring())[1], (0.5 + 1e-4) * torch.eye(2, dtype=torch.float64))
    assert torch.allclose(_mixture_moments(grid())[1], (8.0 + 0.0025) * torch.eye(2, dtype=torch.float64))


# Exact densities


@pytest.mark.parametrize("name", MIXTURE_NAMES)
def test_log_prob_matches_scipy(name):
    target = get(name)
    x = target.sample(50, generator=_seeded(4), dtype=torch.float64)
    extra = torch.tensor([[0.3], [-5.0]], dtype=torch.float64).expand(2, target.dim)
    x = torch.cat([x, extra])
    expected = _scipy_log_prob(target, x.numpy())
    np.testing.assert_allclose(target.log_prob(x).numpy(), expected, rtol=1e-12, atol=1e-10)


def test_log_prob_keeps_dtype_and_gradient():
    x = torch.tensor([[0.5, -2.0], [1.0, 3.0]], dtype=torch.float32, requires_grad=True)
    log_p = standard_normal_2d().log_prob(x)
    assert log_p.dtype == torch.float32 and log_p.shape == (2,)
    log_p.sum().backward()
    assert torch.allclose(x.grad, -x.detach())


def test_gaussian_1d_defaults():
    target = gaussian_1d()
    assert target.means.tolist() == [[3.0]] and target.std == 0.5 and target.dim == 1
    x = torch.linspace(0.0, 6.0, 13, dtype=torch.float64).reshape(-1, 1)
    expected = scipy.stats.norm(3.0, 0.5).logpdf(x.numpy()[:, 0])
    np.testing.assert_allclose(target.log_prob(x).numpy(), expected, rtol=1e-13)


def test_mixture_1d_defaults_and_arguments():
    target = mixture_1d()
    assert target.weights.tolist() == [0.3, 0.7]
    assert target.means.tolist() == [[-1.0], [1.5]] and target.stds.tolist() == [0.4, 0.6]
    x = np.linspace(-3.0, 4.0, 15)
    expected = np.log(0.3 * scipy.stats.norm(-1, 0.4).pdf(x) + 0.7 * scipy.stats.norm(1.5, 0.6).pdf(x))
    np.testing.assert_allclose(target.log_prob(torch.tensor(x).reshape(-1, 1)).numpy(), expected, rtol=1e-12)
    other = mixture_1d(weights=(1.0, 3.0), locs=(0.0, 2.0), scales=(1.0, 1.0))
    assert other.weights.tolist() == [0.25, 0.75] and other.std == 1.0


def test_standard_normal_2d():
    target = standard_normal_2d()
    assert target.name == "normal_2d" and target.means.tolist() == [[0.0, 0.0]] and target.std == 1.0
    log_p = target.log_prob(torch.zeros(1, 2, dtype=torch.float64)).item()
    assert log_p == pytest.approx(-math.log(2 * math.pi), abs=1e-15)


def test_log_prob_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"Expected x of shape \[n, 1\], actual \[5\]"):
        gaussian_1d().log_prob(torch.zeros(5))
    with pytest.raises(ValueError, match=r"Expected x of shape \[n, 2\], actual list"):
        ring().log_prob([[0.0, 1.0]])


def test_swiss_roll_has_no_density():
    with pytest.raises(NotImplementedError, match="'swiss_roll' has no exact density"):
        swiss_roll().log_prob(torch.zeros(3, 2))


# Geometry of the PacGAN targets


def test_ring_means_on_unit_circle_at_multiples_of_45_degrees():
    target = ring()
    expected = [[math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)] for k in range(8)]
    assert torch.allclose(target.means, torch.tensor(expected, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(target.means.norm(dim=-1), torch.ones(8, dtype=torch.float64), atol=1e-15)
    assert target.std == 0.01 and torch.allclose(target.weights, torch.full((8,), 1 / 8, dtype=torch.float64))


def test_grid_means_and_spacing():
    target = grid()
    axis = (-4.0, -2.0, 0.0, 2.0, 4.0)
    assert {tuple(m) for m in target.means.tolist()} == set(itertools.product(axis, axis))
    distances = torch.cdist(target.means, target.means) + 1e9 * torch.eye(25, dtype=torch.float64)
    assert torch.equal(distances.min(dim=1).values, torch.full((25,), 2.0, dtype=torch.float64))
    assert target.std == 0.05 and len(target.weights) == 25
    axis = (-1.0, 0.0, 1.0)
    assert {tuple(m) for m in grid(side=3, spacing=1.0).means.tolist()} == set(itertools.product(axis, axis))


# Swiss roll


def test_swiss_roll_without_noise_lies_on_the_spiral():
    x = SwissRoll(noise=0.0).sample(1000, generator=_seeded(5), dtype=torch.float64)
    t = 7.5 * x.norm(dim=-1)
    assert t.min() >= 1.5 * math.pi and t.max() <= 4.5 * math.pi
    assert torch.allclose(7.5 * x / t[:, None], torch.stack([t.cos(), t.sin()], dim=-1), atol=1e-12)


def test_swiss_roll_moments_match_closed_form():
    # t ~ U[a, b]: E[t cos t] = 6 pi / (b - a) = 2, E[t sin t] = 2 / (3 pi), E[t^2] = (b^3 - a^3) / (3 (b - a)).
    n, a, b = 40_000, 1.5 * math.pi, 4.5 * math.pi
    x = swiss_roll(noise=0.25).sample(n, generator=_seeded(6), dtype=torch.float64)
    assert x[:, 0].mean().item() == pytest.approx(2 / 7.5, abs=5 * x[:, 0].std().item() / math.sqrt(n))
    assert x[:, 1].mean().item() == pytest.approx(2 / (3 * math.pi * 7.5), abs=5 * x[:, 1].std().item() / math.sqrt(n))
    squared = (x**2).sum(-1)
    expected = ((b**3 - a**3) / (3 * (b - a)) + 2 * 0.25**2) / 7.5**2
    assert squared.mean().item() == pytest.approx(expected, abs=5 * squared.std().item() / math.sqrt(n))


def test_swiss_roll_matches_sklearn_definition():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    reference = sklearn_datasets.make_swiss_roll(40_000, noise=0.25, random_state=0)[0][:, [0, 2]] / 7.5
    ours = swiss_roll().sample(40_000, generator=_seeded(7), dtype=torch.float64).numpy()
    np.testing.assert_allclose(ours.mean(0), reference.mean(0), atol=0.02)
    np.testing.assert_allclose(np.cov(ours.T), np.cov(reference.T), atol=0.02)


# Reproducible training sets


def test_fixed_dataset_is_the_seeded_sample():
    data = fixed_dataset("normal_2d", 200)
    assert data.shape == (200, 2) and data.dtype == torch.float32
    assert torch.equal(data, fixed_dataset("normal_2d", 200, seed=0))
    assert torch.equal(data, standard_normal_2d().sample(200, generator=_seeded(0)))
    assert not torch.equal(data, fixed_dataset("normal_2d", 200, seed=1))


def test_fixed_dataset_passes_dtype_and_kwargs():
    data = fixed_dataset("ring", 10, seed=3, dtype=torch.float64, num_modes=4, std=1e-9)
    assert data.dtype == torch.float64
    assert torch.allclose(data.norm(dim=-1), torch.ones(10, dtype=torch.float64), atol=1e-8)


# Batches


def test_batches_cover_each_epoch_once_and_reshuffle():
    data = torch.arange(12.0)
    it = batches(data, 4, generator=_seeded(0))
    epochs = [torch.cat([next(it) for _ in range(3)]) for _ in range(3)]
    for epoch in epochs:
        assert torch.equal(epoch.sort().values, data)
    assert not torch.equal(epochs[0], epochs[1])


def test_batches_drop_the_remainder_and_are_reproducible():
    data = torch.arange(20.0).reshape(10, 2)
    first = [next_batch for next_batch, _ in zip(batches(data, 3, generator=_seeded(1)), range(30))]
    again = [next_batch for next_batch, _ in zip(batches(data, 3, generator=_seeded(1)), range(30))]
    assert all(batch.shape == (3, 2) for batch in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    epoch = torch.cat(first[:3])[:, 0]
    assert len(set(epoch.tolist())) == 9


def test_batch_of_whole_data_set():
    data = torch.arange(5.0)
    assert torch.equal(next(batches(data, 5)).sort().values, data)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batches_reject_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="Expected batch_size to be an integer >= 1"):
        batches(torch.zeros(4, 2), batch_size)


def test_batches_reject_batch_larger_than_data():
    with pytest.raises(ValueError, match=r"Expected batch_size <= len\(data\) = 4, actual 5"):
        batches(torch.zeros(4, 2), 5)


@pytest.mark.parametrize("data", [torch.zeros(0, 2), torch.tensor(1.0), [1.0, 2.0]])
def test_batches_reject_bad_data(data):
    with pytest.raises(ValueError, match="Expected a non-empty tensor of data"):
        batches(data, 1)


# Constructor and argument validation


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gaussian_1d(scale=0.0), r"Expected scale > 0, actual 0.0"),
        (lambda: ring(num_modes=0), r"Expected num_modes to be an integer >= 1, actual 0"),
        (lambda: ring(radius=-1.0), r"Expected radius > 0, actual -1.0"),
        (lambda: ring(std=float("nan")), r"Expected std > 0, actual nan"),
        (lambda: grid(side=2.5), r"Expected side to be an integer >= 1, actual 2.5"),
        (lambda: grid(spacing=0.0), r"Expected spacing > 0, actual 0.0"),
        (lambda: grid(std=-0.05), r"Expected std > 0, actual -0.05"),
        (lambda: swiss_roll(noise=-0.1), r"Expected noise >= 0, actual -0.1"),
        (lambda: mixture_1d(weights=(0.5, -0.5)), r"Expected finite weights > 0, actual \[0.5, -0.5\]"),
        (lambda: mixture_1d(scales=(0.4, 0.0)), r"Expected finite stds > 0, actual \[0.4, 0.0\]"),
        (lambda: mixture_1d(locs=(0.0, float("inf"))), r"Expected finite means, actual \[\[0.0\], \[inf\]\]"),
        (
            lambda: mixture_1d(weights=(1.0,)),
            r"Expected the same number K >= 1 of weights, means and stds, actual 1, 2 and 2",
        ),
        (
            lambda: GaussianMixture([1.0], [1.0], [1.0]),
            r"Expected weights \[K\], means \[K, d\] and stds \[K\], actual \[1\], \[1\] and \[1\]",
        ),
        (lambda: GaussianMixture([], torch.zeros(0, 2), []), r"Expected the same number K >= 1"),
        (lambda: ring().sample(0), r"Expected n to be an integer >= 1, actual 0"),
        (lambda: mixture_1d().std, r"Expected equal component stds for an isotropic std, actual \[0.4, 0.6\]"),
    ],
)
def test_value_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()
