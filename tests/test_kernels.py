"""Kernels, MMD^2 and KID: direct double-loop computations, closed forms for Gaussians,
unbiasedness over many draws (tolerances from the measured standard error), the documented
kernel sets, and every ValueError branch."""

import math

import pytest
import torch

from bayesgan.kernels import GMMN_BANDWIDTHS, PAPER_INVERSE_BANDWIDTHS, Polynomial, RBFMixture, mmd2
from bayesgan.metrics import KEY_KID, KEY_KID_STD, kid

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def rbf(a, b, lams):
    return sum(math.exp(-lam * sum((ai - bi) ** 2 for ai, bi in zip(a, b))) for lam in lams)


def poly(a, b, gamma, coef, degree):
    return (gamma * sum(ai * bi for ai, bi in zip(a, b)) + coef) ** degree


def direct_mmd2(x, y, k, estimator):
    """The textbook sums, one pair at a time."""
    x, y = x.reshape(len(x), -1).tolist(), y.reshape(len(y), -1).tolist()
    n, m = len(x), len(y)
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    if estimator == "biased":
        kxx = sum(k(a, b) for a in x for b in x) / n**2
        kyy = sum(k(a, b) for a in y for b in y) / m**2
    else:
        kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return kxx + kyy - 2 * kxy


# -- the kernel sets ---------------------------------------------------------------------------
def test_paper_inverse_bandwidths_are_the_default():
    # benchmarks.md 5.4: sum of exp(-lam ||x - y||^2), lam in {1, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001}.
    assert PAPER_INVERSE_BANDWIDTHS == (1.0, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001)
    assert RBFMixture().inverse_bandwidths == PAPER_INVERSE_BANDWIDTHS
    assert repr(RBFMixture()) == "RBFMixture((1.0, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001))"


def test_gmmn_bandwidths_convert_to_inverse_bandwidths():
    # kernels.py: GMMN's sigmas (2, 5, 10, 20, 40, 80) with exp(-||x - y||^2 / (2 sigma^2)).
    assert GMMN_BANDWIDTHS == (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)
    kernel = RBFMixture(bandwidths=GMMN_BANDWIDTHS)
    assert kernel.inverse_bandwidths == pytest.approx([0.125, 0.02, 0.005, 0.00125, 0.0003125, 0.000078125], rel=1e-15)
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[-2.0, 6.0]])  # squared distance 25
    want = sum(math.exp(-25.0 / (2 * s**2)) for s in GMMN_BANDWIDTHS)
    assert kernel(x, y).item() == pytest.approx(want, rel=1e-14)


def test_rbf_mixture_gram_matrix_is_the_direct_sum():
    x, y = torch.randn(5, 3, generator=seeded(0)), torch.randn(4, 3, generator=seeded(1))
    lams = (2.0, 0.3)
    gram = RBFMixture(lams)(x, y)
    want = torch.tensor([[rbf(a, b, lams) for b in y.tolist()] for a in x.tolist()])
    assert gram.shape == (5, 4)
    assert torch.allclose(gram, want, rtol=1e-13)
    # k(x, x) = number of kernels on the diagonal, and the matrix is symmetric.
    kxx = RBFMixture(lams)(x, x)
    assert torch.allclose(kxx.diagonal(), torch.full((5,), 2.0), atol=1e-12)
    assert torch.allclose(kxx, kxx.T, atol=1e-15)


@pytest.mark.parametrize("gamma, coef, degree", [(None, 1.0, 3), (0.5, 2.0, 2)])
def test_polynomial_kernel_is_the_direct_formula(gamma, coef, degree):
    x, y = torch.randn(4, 3, generator=seeded(2)), torch.randn(6, 3, generator=seeded(3))
    g = 1.0 / 3 if gamma is None else gamma  # the KID kernel uses gamma = 1 / dim
    gram = Polynomial(degree=degree, gamma=gamma, coef=coef)(x, y)
    want = torch.tensor([[poly(a, b, g, coef, degree) for b in y.tolist()] for a in x.tolist()])
    assert torch.allclose(gram, want, rtol=1e-13)
    assert repr(Polynomial()) == "Polynomial(degree=3, gamma=None, coef=1.0)"


# -- mmd2 against the double loop --------------------------------------------------------------
KERNELS = {
    "paper": (RBFMixture(), lambda a, b: rbf(a, b, PAPER_INVERSE_BANDWIDTHS)),
    "gmmn": (RBFMixture(bandwidths=GMMN_BANDWIDTHS), lambda a, b: rbf(a, b, [1 / (2 * s**2) for s in GMMN_BANDWIDTHS])),
    "narrow": (RBFMixture([4.0]), lambda a, b: rbf(a, b, [4.0])),
    "kid": (Polynomial(), lambda a, b: poly(a, b, 1.0 / 4, 1.0, 3)),
}


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("n, m", [(6, 6), (5, 9)])
def test_mmd2_equals_the_double_loop(kernel, estimator, n, m):
    x = torch.randn(n, 2, 2, generator=seeded(n)) * 1.5  # [n, 2, 2]: events are flattened
    y = torch.randn(m, 2, 2, generator=seeded(m + 100)) + 0.5
    module, k = KERNELS[kernel]
    value = mmd2(x, y, module, estimator=estimator)
    assert value.item() == pytest.approx(direct_mmd2(x, y, k, estimator), rel=1e-10, abs=1e-12)


def test_mmd2_default_estimator_is_unbiased_and_is_differentiable():
    x, y = torch.randn(6, 2, generator=seeded(0)), torch.randn(7, 2, generator=seeded(1)).requires_grad_(True)
    kernel = RBFMixture([0.5])
    value = mmd2(x, y, kernel)
    assert value.item() == pytest.approx(mmd2(x, y, kernel, estimator="unbiased").item(), rel=1e-15)
    (grad,) = torch.autograd.grad(value, y)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert mmd2(x, x, kernel, estimator="biased").item() == pytest.approx(0.0, abs=1e-14)


def test_biased_minus_unbiased_is_the_diagonal_correction():
    """V - U = (1/n)(k(x,x) - mean_{i != j} k(x_i, x_j)) + (1/m)(same for y); with an RBF
    mixture of K kernels the diagonal is K."""
    x, y = torch.randn(8, 1, generator=seeded(4)), torch.randn(5, 1, generator=seeded(5))
    kernel = RBFMixture([1.0, 0.1])
    kxx, kyy = kernel(x, x), kernel(y, y)
    off_x = (kxx.sum() - kxx.trace()) / (8 * 7)
    off_y = (kyy.sum() - kyy.trace()) / (5 * 4)
    gap = mmd2(x, y, kernel, estimator="biased") - mmd2(x, y, kernel, estimator="unbiased")
    assert gap.item() == pytest.approx(((2 - off_x) / 8 + (2 - off_y) / 5).item(), rel=1e-12)


# -- unbiasedness ------------------------------------------------------------------------------
def _rbf_gaussian_mean(lam, mu1, s1, mu2, s2):
    """E exp(-lam (X - Y)^2), X ~ N(mu1, s1^2), Y ~ N(mu2, s2^2) independent."""
    v = 1 + 2 * lam * (s1**2 + s2**2)
    return math.exp(-lam * (mu1 - mu2) ** 2 / v) / math.sqrt(v)


def _draws(estimator, mu, draws=1000, n=8, lam=1.0):
    g = seeded(0)
    kernel = RBFMixture([lam])
    values = [
        mmd2(torch.randn(n, 1, generator=g), mu + torch.randn(n, 1, generator=g), kernel, estimator=estimator).item()
        for _ in range(draws)
    ]
    t = torch.tensor(values)
    return t.mean().item(), t.std().item() / math.sqrt(draws)


@pytest.mark.parametrize("mu", [0.0, 1.0])
def test_unbiased_mmd2_mean_is_the_population_value(mu):
    """Over 1,000 draws of 8 + 8 points, the U-statistic's mean is within 4 standard errors of
    the closed-form MMD^2 of N(0, 1) and N(mu, 1) under exp(-(x - y)^2) (0 for mu = 0; it can
    be negative on a draw). The standard error is measured (about 0.0035 at mu = 0, 0.006 at
    mu = 1). The V-statistic is biased upwards by (1/n)(2 - E_P k - E_Q k) = 0.137 here, more
    than 10 standard errors: the test can tell the two apart."""
    exact = (
        _rbf_gaussian_mean(1.0, 0, 1, 0, 1) + _rbf_gaussian_mean(1.0, mu, 1, mu, 1)
        - 2 * _rbf_gaussian_mean(1.0, 0, 1, mu, 1)
    )
    mean, se = _draws("unbiased", mu)
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    assert se < 0.01
    biased_mean, _ = _draws("biased", mu)
    assert biased_mean - exact > 10 * se


# -- KID ---------------------------------------------------------------------------------------
def _kid_direct(x, y):
    """Unbiased MMD^2 with (a.b/d + 1)^3, by the double loop."""
    d = x.shape[1]
    return direct_mmd2(x, y, lambda a, b: poly(a, b, 1.0 / d, 1.0, 3), "unbiased")


def test_kid_matches_the_direct_computation_on_the_same_subsets():
    x, y = torch.randn(30, 3, generator=seeded(0)), torch.randn(25, 3, generator=seeded(1)) + 0.3
    result = kid(x, y, num_subsets=4, subset_size=12, generator=seeded(42))
    g = seeded(42)  # replay kid's draws: one randperm of the real rows, one of the fakes, per subset
    values = []
    for _ in range(4):
        i = torch.randperm(30, generator=g)[:12]
        j = torch.randperm(25, generator=g)[:12]
        values.append(_kid_direct(x[i], y[j]))
    t = torch.tensor(values)
    assert result[KEY_KID] == pytest.approx(t.mean().item(), rel=1e-10)
    assert result[KEY_KID_STD] == pytest.approx(t.std().item(), rel=1e-8)


def test_kid_with_whole_sets_is_subset_free():
    # m = min(n_real, n_fake, subset_size): with equal sizes every subset is the whole set.
    x, y = torch.randn(15, 2, generator=seeded(3)), torch.randn(15, 2, generator=seeded(4))
    result = kid(x, y, num_subsets=3, generator=seeded(0))
    assert result[KEY_KID] == pytest.approx(_kid_direct(x, y), rel=1e-10)
    assert result[KEY_KID_STD] < 1e-12
    single = kid(x, y, num_subsets=1)
    assert single[KEY_KID_STD] == 0.0


def test_kid_is_unbiased_for_the_closed_form():
    """In 1-D, (xy + 1)^3 = x^3 y^3 + 3 x^2 y^2 + 3 x y + 1, so MMD^2 = sum_k c_k (m_k(P) - m_k(Q))^2
    with c = (1, 3, 3) for the moments k = 3, 2, 1. For N(0, 1) vs N(1/2, 1):
    (1.625 - 0)^2 + 3 (1.25 - 1)^2 + 3 (0.5 - 0)^2 = 3.578125. The mean of 2,000 KIDs of 100 + 100
    points is within 4 standard errors of it (the cubic kernel is heavy-tailed: one KID has a
    standard deviation near 2.7, so the standard error is about 0.061; measured mean 3.70).
    The V-statistic on the same draws is biased by (E_P k(x, x) - E_P k(x, x'))/m + (the same
    for Q) = (28 - 4)/100 + (45.64 - 9.08)/100 = 0.61, about 10 standard errors."""
    exact = 1.625**2 + 3 * 0.25**2 + 3 * 0.5**2
    assert exact == 3.578125
    g = seeded(5)
    values, biased = [], []
    for _ in range(2000):
        x, y = torch.randn(100, 1, generator=g), 0.5 + torch.randn(100, 1, generator=g)
        values.append(kid(x, y, num_subsets=1)[KEY_KID])
        biased.append(mmd2(x, y, Polynomial(), estimator="biased").item())
    t, b = torch.tensor(values), torch.tensor(biased)
    se = t.std().item() / math.sqrt(len(values))
    assert abs(t.mean().item() - exact) < 4 * se, (t.mean().item(), se)
    assert se < 0.08
    assert b.mean().item() - exact > 6 * se
    assert (b - t).mean().item() == pytest.approx(0.24 + (45.640625 - 9.078125) / 100, abs=0.02)


def test_kid_same_distribution_averages_to_zero():
    g = seeded(6)
    values = torch.tensor([
        kid(torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g), num_subsets=1)[KEY_KID]
        for _ in range(400)
    ])
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item()) < 4 * se
    assert (values < 0).any()  # an unbiased estimate of 0 must go negative


# -- ValueError branches -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(3, 2), RBFMixture(), estimator="v"), "'unbiased' or 'biased'"),
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(3, 3), RBFMixture()), "samples of one shape"),
        (lambda: mmd2(torch.zeros(1, 2), torch.zeros(3, 2), RBFMixture()), "at least 2 samples"),
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(1, 2), RBFMixture()), "at least 2 samples"),
        (lambda: RBFMixture([1.0], bandwidths=[1.0]), "actual both"),
        (lambda: RBFMixture([]), "positive inverse bandwidths"),
        (lambda: RBFMixture([1.0, 0.0]), "positive inverse bandwidths"),
        (lambda: RBFMixture([-0.5]), "positive inverse bandwidths"),
        (lambda: RBFMixture(bandwidths=[2.0, 0.0]), "positive bandwidths"),
        (lambda: RBFMixture(bandwidths=[-1.0]), "positive bandwidths"),
        (lambda: RBFMixture(bandwidths=[]), "positive bandwidths"),
        (lambda: kid(torch.zeros(5), torch.zeros(5, 1)), r"shape \[n, d\]"),
        (lambda: kid(torch.zeros(5, 2), torch.zeros(5, 3)), r"shape \[n, d\]"),
        (lambda: kid(torch.zeros(5, 2), torch.zeros(5, 2), num_subsets=0), "num_subsets"),
        (lambda: kid(torch.zeros(5, 2), torch.zeros(5, 2), num_subsets=2.0), "num_subsets"),
        (lambda: kid(torch.zeros(1, 2), torch.zeros(5, 2)), "at least 2 samples"),
        (lambda: kid(torch.zeros(5, 2), torch.zeros(5, 2), subset_size=1), "at least 2 samples"),
    ],
)
def test_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mmd2_of_a_single_sample_is_fine_when_biased():
    value = mmd2(torch.zeros(1, 2), torch.ones(1, 2), RBFMixture([1.0]), estimator="biased")
    assert value.item() == pytest.approx(2 - 2 * math.exp(-2.0), rel=1e-14)
