"""The f-divergence table: identities first, then the optimal-critic bound, then the registry.

Reference values for the Gaussian pairs are benchmarks.md §3.2 (6 digits); every other expected
value is a closed form written out here, independently of the library.
"""

import math

import pytest
import scipy.integrate
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesgan import divergences
from bayesgan.divergences import (
    GAN,
    KL,
    Alpha,
    Divergence,
    JensenShannon,
    Neyman,
    Pearson,
    ReverseKL,
    SquaredHellinger,
    TotalVariation,
    WeightedJensenShannon,
)

mpmath = pytest.importorskip("mpmath")

pytestmark = pytest.mark.usefixtures("float64", "one_thread")

LOG2 = math.log(2.0)
PARAMETERS = {
    "weighted_js": [{"pi": 0.2}, {"pi": 0.5}, {"pi": 0.8}],
    "alpha": [{"alpha": -1.0}, {"alpha": 0.5}, {"alpha": 2.0}, {"alpha": 3.0}],
}


def _all_cases():
    """Every registered divergence class once (aliases deduplicated), with its parameter grid."""
    cases, seen = [], set()
    for name in divergences.names():
        cls = type(divergences.get(name))
        if cls in seen:
            continue
        seen.add(cls)
        cases.extend((cls.name, kwargs) for kwargs in PARAMETERS.get(cls.name, [{}]))
    return cases


CASES = _all_cases()
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in CASES]
# f'(1): the optimal critic value where P = Q (f-GAN Table A, last column; TV's subgradient 0).
F_PRIME_AT_ONE = {"kl": 1.0, "reverse_kl": -1.0, "gan": -LOG2}


def _div(name, kwargs):
    return divergences.get(name, **kwargs)


def _t(values):
    return torch.as_tensor(values, dtype=torch.float64)


def test_every_registered_class_is_covered():
    assert len(CASES) == 8 + 3 + 4
    assert {name for name, _ in CASES} == {
        "total_variation", "kl", "reverse_kl", "pearson", "neyman", "squared_hellinger",
        "js", "gan", "weighted_js", "alpha",
    }


# -- identities of one row ---------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_f_and_f_prime_at_one(name, kwargs):
    d = _div(name, kwargs)
    one = _t(1.0)
    # The GAN row is the one whose f(1) is not 0: D_gan = 2 JSD - log 4 (f-GAN Table A).
    assert d.f(one).item() == pytest.approx(-2 * LOG2 if name == "gan" else 0.0, abs=1e-15)
    assert d.f_prime(one).item() == pytest.approx(F_PRIME_AT_ONE.get(name, 0.0), abs=1e-15)


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_fenchel_young_inequality_on_a_grid(name, kwargs):
    d = _div(name, kwargs)
    u = torch.logspace(-3, 3, 61)[:, None]
    t = d.activation(torch.linspace(-20, 20, 81))[None, :]
    fu, fs = d.f(u), d.f_star(t)
    assert torch.isfinite(fs).all()
    gap = fu + fs - u * t
    scale = 1 + fu.abs() + fs.abs() + (u * t).abs()
    assert (gap >= -1e-12 * scale).all(), gap.min()


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_fenchel_young_equality_at_f_prime(name, kwargs):
    d = _div(name, kwargs)
    u = torch.logspace(-3, 3, 601)
    t = d.f_prime(u)
    fu, fs = d.f(u), d.f_star(t)
    gap = fu + fs - u * t
    scale = torch.stack([torch.ones_like(u), fu.abs(), (u * t).abs()]).amax(0)
    assert (gap.abs() <= 1e-10 * scale).all(), (gap.abs() / scale).max()


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
@settings(max_examples=60, deadline=None, database=None)
@given(
    u=st.floats(1e-3, 1e3, allow_nan=False),
    v=st.floats(-30.0, 30.0, allow_nan=False),
)
def test_fenchel_young_property(name, kwargs, u, v):
    d = _div(name, kwargs)
    u, t = _t(u), d.activation(_t(v))
    fu, fs = d.f(u), d.f_star(t)
    assert torch.isfinite(fs)
    scale = 1 + fu.abs() + fs.abs() + (u * t).abs()
    assert fu + fs - u * t >= -1e-12 * scale
    # Equality at the optimal critic t = f'(u).
    t_opt = d.f_prime(u)
    gap = fu + d.f_star(t_opt) - u * t_opt
    assert gap.abs() <= 1e-10 * max(1.0, fu.abs().item(), (u * t_opt).abs().item())


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_activation_maps_into_domain(name, kwargs):
    d = _div(name, kwargs)
    t = d.activation(torch.linspace(-20, 20, 4001))
    assert torch.isfinite(d.f_star(t)).all()


# Points just outside dom f*, where f* = +inf mathematically (f-GAN Table B).
OUTSIDE = {
    "total_variation": [0.5 + 1e-9, -0.5 - 1e-9, 3.0],
    "reverse_kl": [0.0, 0.5],
    "neyman": [1.5, 10.0],
    "squared_hellinger": [1.0, 2.0],
    "js": [LOG2, 1.0],
    "gan": [0.0, 0.3],
}


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_f_star_is_infinite_outside_its_domain(name):
    assert (divergences.get(name).f_star(_t(OUTSIDE[name])) == math.inf).all()


@pytest.mark.parametrize("pi", [0.2, 0.5, 0.8])
def test_weighted_js_f_star_outside_domain(pi):
    d = WeightedJensenShannon(pi)
    bound = -pi * math.log(pi)
    assert (d.f_star(_t([bound, bound + 0.1])) == math.inf).all()
    assert torch.isfinite(d.f_star(_t(bound - 1e-6)))


@pytest.mark.parametrize("alpha", [-1.0, 0.5])
def test_alpha_below_one_f_star_outside_domain(alpha):
    d = Alpha(alpha)
    assert (d.f_star(_t([1 / (1 - alpha) + 1e-9, 5.0])) == math.inf).all()


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_f_star_is_the_supremum(name, kwargs):
    """f*(t) = sup_{u >= 0} {u t - f(u)}, by brute force over a dense grid of u."""
    d = _div(name, kwargs)
    u = torch.cat([_t([0.0, 1.0]), torch.logspace(-6, 6, 24001)])[:, None]
    t = d.activation(torch.linspace(-8, 8, 33))
    if name == "alpha" and kwargs["alpha"] > 1:  # below -1/(alpha - 1) the sup sits at u = 0
        t = torch.cat([t, torch.linspace(-10.0, -1 / (kwargs["alpha"] - 1), 5)])
    fu = d.f(u.clamp(min=1e-300))  # f(0) as the limit u -> 0 (+inf-like for some rows)
    brute = (u * t - fu).amax(0)
    fs = d.f_star(t)
    scale = 1 + fs.abs()
    assert (brute <= fs + 1e-12 * scale).all()  # Fenchel-Young
    if name == "total_variation":
        maximizer = torch.ones_like(t)
    elif name == "alpha" and kwargs["alpha"] > 1:
        maximizer = torch.where(1 + t * (kwargs["alpha"] - 1) > 0, d.ratio(t), torch.zeros_like(t))
    else:
        maximizer = d.ratio(t)
    inside = (maximizer == 0) | ((maximizer > 1e-5) & (maximizer < 1e5))
    assert inside.sum() >= 10
    assert torch.allclose(brute[inside], fs[inside], rtol=1e-5, atol=1e-6)


def test_f_star_at_the_closure_of_its_domain():
    # The conjugate is lower semicontinuous: finite boundary values are not +inf.
    assert Neyman().f_star(_t(1.0)).item() == 2.0  # sup_u {u - (1 - u)^2 / u} = sup {2 - 1/u}
    assert Alpha(-1.0).f_star(_t(0.5)).item() == pytest.approx(1.0, abs=1e-15)  # -1/alpha
    assert Alpha(0.5).f_star(_t(2.0)).item() == math.inf
    for alpha in (2.0, 3.0):  # f(0) = 1/alpha is finite, so f* = -1/alpha below -1/(alpha - 1)
        t = _t([-1 / (alpha - 1), -1 / (alpha - 1) - 1e-3, -50.0])
        want = torch.full_like(t, -1 / alpha)
        assert torch.allclose(Alpha(alpha).f_star(t), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_stable_conjugate_matches_composition(name, kwargs):
    # In [-15, 15] the naive f*(g(v)) is well conditioned in float64; beyond it the activation
    # sits within ~1e-7 of a domain boundary and the naive composition itself loses digits
    # (test_stable_conjugate_matches_high_precision covers [-50, 50]).
    d = _div(name, kwargs)
    v = torch.linspace(-15, 15, 3001)
    stable, naive = d.f_star_activation(v), d.f_star(d.activation(v))
    assert torch.isfinite(stable).all() and torch.isfinite(naive).all()
    assert torch.allclose(stable, naive, rtol=1e-8, atol=1e-12)


def _mp_f_star_activation(name, kwargs, v):
    """f*(g_f(v)) from f-GAN Table B, evaluated in 60-digit arithmetic."""
    mp = mpmath.mp
    log1pexp = lambda x: mp.log1p(mp.exp(x))  # noqa: E731
    if name == "total_variation":
        return mp.tanh(v) / 2
    if name == "kl":
        return mp.exp(v - 1)
    if name == "reverse_kl":  # g(v) = -softplus(-v), not the table's -exp(-v) (see ReverseKL)
        t = -log1pexp(-v)
        return -1 - mp.log(-t)
    if name == "pearson":
        return v**2 / 4 + v
    if name == "neyman":  # g(v) = 1 - softplus(-v)^2, not the table's 1 - exp(-v) (see Neyman)
        t = 1 - log1pexp(-v) ** 2
        return 2 - 2 * mp.sqrt(1 - t)
    if name == "squared_hellinger":
        t = -mp.expm1(-v)
        return t / (1 - t)
    if name == "js":
        t = mp.log(2) - log1pexp(-v)
        return -mp.log(2 - mp.exp(t))
    if name == "gan":
        t = -log1pexp(-v)
        return -mp.log(1 - mp.exp(t))
    if name == "weighted_js":
        pi = mp.mpf(kwargs["pi"])
        t = -pi * mp.log(pi) - log1pexp(-v)
        return (1 - pi) * mp.log((1 - pi) / (1 - pi * mp.exp(t / pi)))
    if name == "alpha":
        a = mp.mpf(kwargs["alpha"])
        t = 1 / (1 - a) - log1pexp(-v) if a < 1 else log1pexp(v) - 1 / (a - 1)
        return ((t * (a - 1) + 1) ** (a / (a - 1)) - 1) / a
    raise AssertionError(f"no high-precision reference for {name}")


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_stable_conjugate_matches_high_precision(name, kwargs):
    d = _div(name, kwargs)
    v = torch.linspace(-50, 50, 201)
    got = d.f_star_activation(v)
    assert torch.isfinite(got).all()
    with mpmath.workdps(60):
        want = _t([float(_mp_f_star_activation(name, kwargs, mpmath.mpf(x))) for x in v.tolist()])
    # 1e-9, not 1e-15: F.softplus switches to the identity above x = 20, dropping exp(-x) ~ 2e-9.
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-13), ((got - want).abs() / want.abs()).max()


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_ratio_inverts_f_prime(name, kwargs):
    d = _div(name, kwargs)
    u = torch.logspace(-3, 3, 601)
    if name == "total_variation":
        with pytest.raises(NotImplementedError, match="no density-ratio read-out"):
            d.ratio(d.f_prime(u))
        return
    assert torch.allclose(d.ratio(d.f_prime(u)), u, rtol=1e-9, atol=0)


def test_gan_ratio_is_the_classifier_odds():
    v = torch.linspace(-20, 20, 401)
    d = GAN()
    assert torch.allclose(d.ratio(d.activation(v)), torch.exp(v), rtol=1e-9)


# -- identities between rows -------------------------------------------------------------------
U = torch.logspace(-4, 4, 801, dtype=torch.float64)


def test_weighted_js_at_one_half_is_half_js():
    w, js = WeightedJensenShannon(0.5), JensenShannon()
    assert torch.allclose(w.f(U), 0.5 * js.f(U), rtol=1e-12, atol=1e-14)
    t = torch.linspace(-30, 0.5 * LOG2 - 1e-6, 501)
    # g = c f  =>  g*(t) = c f*(t / c)
    assert torch.allclose(w.f_star(t), 0.5 * js.f_star(2 * t), rtol=1e-10, atol=1e-14)


def test_alpha_one_half_is_twice_squared_hellinger():
    a, h = Alpha(0.5), SquaredHellinger()
    assert torch.allclose(a.f(U), 2 * h.f(U), rtol=1e-12, atol=1e-14)
    t = torch.linspace(-30, 2 - 1e-6, 501)
    assert torch.allclose(a.f_star(t), 2 * h.f_star(t / 2), rtol=1e-10, atol=1e-14)


def test_alpha_two_is_half_pearson():
    a, p = Alpha(2.0), Pearson()
    assert torch.allclose(a.f(U), 0.5 * p.f(U), rtol=1e-12, atol=1e-14)
    t = torch.linspace(-1 + 1e-6, 30, 501)  # dom f* of alpha = 2 is t > -1
    assert torch.allclose(a.f_star(t), 0.5 * p.f_star(2 * t), rtol=1e-10, atol=1e-14)


def test_gan_is_js_shifted_by_log_two():
    # f_gan(u) = f_js(u) - (u + 1) log 2, so f_gan*(t) = f_js*(t + log 2) + log 2.
    g, js = GAN(), JensenShannon()
    assert torch.allclose(g.f(U), js.f(U) - (U + 1) * LOG2, rtol=1e-12, atol=1e-12)
    v = torch.linspace(-30, 30, 601)
    assert torch.allclose(g.activation(v), js.activation(v) - LOG2, rtol=1e-14, atol=1e-14)
    want = js.f_star_activation(v) + LOG2
    assert torch.allclose(g.f_star_activation(v), want, rtol=1e-12, atol=1e-14)
    # The naive JS conjugate -log(2 - e^t) cancels as t -> log 2, so stop at v = 15.
    t = g.activation(v[v <= 15])
    assert torch.allclose(g.f_star(t), js.f_star(t + LOG2) + LOG2, rtol=1e-8, atol=1e-12)


def test_weighted_js_f_star_matches_its_stable_form_at_the_paper_table_formula():
    # Table B: f*(t) = (1 - pi) log((1 - pi) / (1 - pi e^{t / pi})).
    for pi in (0.2, 0.5, 0.8):
        d = WeightedJensenShannon(pi)
        t = torch.linspace(-20, -pi * math.log(pi) - 1e-3, 301)
        want = (1 - pi) * torch.log((1 - pi) / (1 - pi * torch.exp(t / pi)))
        assert torch.allclose(d.f_star(t), want, rtol=1e-12, atol=1e-14)


# -- the variational bound is tight at the optimal critic --------------------------------------
# benchmarks.md §3.2: P || Q as (mu1, sigma1, mu2, sigma2) and KL, BC, Pearson, JSD (nats), TV.
_COLUMNS = ("kl", "bc", "pearson", "jsd", "tv")
PAIRS = {
    "N(0,1)|N(1,1)": ((0.0, 1.0, 1.0, 1.0), (0.500000, 0.882497, 1.718282, 0.111421, 0.382925)),
    "N(0,1)|N(0,4)": ((0.0, 1.0, 0.0, 2.0), (0.318147, 0.894427, 0.511858, 0.092733, 0.322675)),
    "N(0,1)|N(1,4)": ((0.0, 1.0, 1.0, 2.0), (0.443147, 0.850805, 0.744026, 0.128175, 0.390066)),
    "N(-1,.25)|N(2,2.25)": ((-1, 0.5, 2, 1.5), (2.654168, 0.314928, 17.142640, 0.530783, 0.886579)),
}
PAIRS = {k: (pair, dict(zip(_COLUMNS, row))) for k, (pair, row) in PAIRS.items()}


def _kl(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def _pearson(m1, s1, m2, s2):
    if 2 * s2**2 <= s1**2:
        return math.inf
    c = 2 * s2**2 - s1**2
    return s2**2 / (s1 * math.sqrt(c)) * math.exp((m1 - m2) ** 2 / c) - 1


def _bc(m1, s1, m2, s2):
    c = s1**2 + s2**2
    return math.sqrt(2 * s1 * s2 / c) * math.exp(-((m1 - m2) ** 2) / (4 * c))


def _alpha_divergence(alpha, m1, s1, m2, s2):
    """(int p^a q^(1-a) - 1) / (a (a - 1)) for two Gaussians, +inf where the integral diverges."""
    c = alpha * s2**2 + (1 - alpha) * s1**2
    if c <= 0:
        return math.inf
    integral = s1 ** (1 - alpha) * s2**alpha / math.sqrt(c) * math.exp(
        -alpha * (1 - alpha) * (m1 - m2) ** 2 / (2 * c)
    )
    return (integral - 1) / (alpha * (alpha - 1))


def _weighted_jsd(pi, m1, s1, m2, s2):
    """int pi p log(p/m) + (1-pi) q log(q/m), m = pi p + (1-pi) q, by adaptive quadrature."""
    P, Q = scipy.stats.norm(m1, s1), scipy.stats.norm(m2, s2)

    def integrand(x):
        lp, lq = P.logpdf(x), Q.logpdf(x)
        lm = math.log(pi * math.exp(lp) + (1 - pi) * math.exp(lq))
        return pi * math.exp(lp) * (lp - lm) + (1 - pi) * math.exp(lq) * (lq - lm)

    lo, hi = min(m1 - 12 * s1, m2 - 12 * s2), max(m1 + 12 * s1, m2 + 12 * s2)
    value, _ = scipy.integrate.quad(
        integrand, lo, hi, points=[m1, m2], epsabs=1e-13, epsrel=1e-12, limit=200
    )
    return value


def _expected(name, kwargs, pair, table):
    m1, s1, m2, s2 = pair
    if name == "total_variation":
        return table["tv"]
    if name == "kl":
        return table["kl"]
    if name == "reverse_kl":
        return _kl(m2, s2, m1, s1)
    if name == "pearson":
        return table["pearson"]
    if name == "neyman":
        return _pearson(m2, s2, m1, s1)
    if name == "squared_hellinger":
        return 2 * (1 - table["bc"])
    if name == "js":
        return 2 * table["jsd"]
    if name == "gan":
        return 2 * table["jsd"] - math.log(4)
    if name == "weighted_js":
        return table["jsd"] if kwargs["pi"] == 0.5 else _weighted_jsd(kwargs["pi"], *pair)
    if name == "alpha":
        return _alpha_divergence(kwargs["alpha"], *pair)
    raise AssertionError(name)


BOUND_CASES = [
    pytest.param(name, kwargs, pair_id, id=f"{case_id}-{pair_id}")
    for (name, kwargs), case_id in zip(CASES, CASE_IDS)
    for pair_id, (pair, table) in PAIRS.items()
    if math.isfinite(_expected(name, kwargs, pair, table))
]


def _grid(m1, s1, m2, s2, n=20_001):
    lo, hi = min(m1 - 10 * s1, m2 - 10 * s2), max(m1 + 10 * s1, m2 + 10 * s2)
    x = torch.linspace(lo, hi, n)
    logp = torch.distributions.Normal(m1, s1).log_prob(x)
    logq = torch.distributions.Normal(m2, s2).log_prob(x)
    return x, logp, logq


@pytest.mark.parametrize("pair_id", sorted(PAIRS))
def test_reference_table_matches_closed_forms(pair_id):
    pair, table = PAIRS[pair_id]
    assert _kl(*pair) == pytest.approx(table["kl"], abs=1e-6)
    assert _bc(*pair) == pytest.approx(table["bc"], abs=1e-6)
    assert _pearson(*pair) == pytest.approx(table["pearson"], abs=1e-6)
    assert _alpha_divergence(0.5, *pair) == pytest.approx(4 * (1 - table["bc"]), abs=1e-5)
    assert _alpha_divergence(2.0, *pair) == pytest.approx(table["pearson"] / 2, abs=1e-6)


@pytest.mark.parametrize("name,kwargs,pair_id", BOUND_CASES)
def test_bound_is_tight_at_the_optimal_critic(name, kwargs, pair_id):
    """E_P[T*] - E_Q[f*(T*)] with T* = f'(p/q) equals D_f(P || Q)."""
    d = _div(name, kwargs)
    pair, table = PAIRS[pair_id]
    x, logp, logq = _grid(*pair)
    t_opt = d.f_prime(torch.exp(logp - logq))
    integrand = logp.exp() * t_opt - logq.exp() * d.f_star(t_opt)
    assert torch.isfinite(integrand).all()
    bound = torch.trapezoid(integrand, x).item()
    assert bound == pytest.approx(_expected(name, kwargs, pair, table), abs=1e-5)


@pytest.mark.parametrize("pair_id", sorted(PAIRS))
def test_gan_divergence_is_js_minus_log_four(pair_id):
    pair, table = PAIRS[pair_id]
    x, logp, logq = _grid(*pair)
    r, q = torch.exp(logp - logq), logq.exp()
    d_gan = torch.trapezoid(q * GAN().f(r), x).item()
    d_js = torch.trapezoid(q * JensenShannon().f(r), x).item()
    assert d_gan == pytest.approx(d_js - math.log(4), abs=1e-10)
    assert d_js == pytest.approx(2 * table["jsd"], abs=1e-5)


# -- the registry ------------------------------------------------------------------------------
def test_names_lists_every_name_and_alias_sorted():
    assert divergences.names() == [
        "alpha", "gan", "jensen_shannon", "js", "kl", "kullback_leibler", "neyman", "pearson",
        "reverse_kl", "rkl", "squared_hellinger", "total_variation", "tv", "weighted_js",
    ]


@pytest.mark.parametrize(
    "name,cls",
    [
        ("tv", TotalVariation), ("total_variation", TotalVariation), ("kl", KL),
        ("kullback_leibler", KL), ("KL", KL), ("reverse_kl", ReverseKL), ("rkl", ReverseKL),
        ("Reverse-KL", ReverseKL), ("pearson", Pearson), ("neyman", Neyman),
        ("squared_hellinger", SquaredHellinger), ("squared-hellinger", SquaredHellinger),
        ("js", JensenShannon), ("jensen_shannon", JensenShannon), ("gan", GAN),
        ("weighted_js", WeightedJensenShannon), ("alpha", Alpha),
    ],
)
def test_get_resolves_names_and_aliases(name, cls):
    d = divergences.get(name)
    assert type(d) is cls
    assert isinstance(d, Divergence)


def test_get_passes_keyword_arguments():
    assert divergences.get("weighted_js", pi=0.3).pi == 0.3
    assert divergences.get("alpha", alpha=3).alpha == 3.0
    assert repr(divergences.get("alpha", alpha=2.0)) == "Alpha(alpha=2.0)"
    assert repr(divergences.get("weighted_js", pi=0.25)) == "WeightedJensenShannon(pi=0.25)"


def test_get_passes_instances_through():
    d = Alpha(3.0)
    assert divergences.get(d) is d
    with pytest.raises(ValueError, match="no keyword arguments"):
        divergences.get(d, alpha=2.0)


@pytest.mark.parametrize("name", ["wasserstein", "", "k-l", 3])
def test_get_unknown_name_lists_valid_names(name):
    with pytest.raises(ValueError, match="Unknown divergence") as info:
        divergences.get(name)
    message = str(info.value)
    for valid in ("js", "kl", "gan", "total_variation", "weighted_js", "alpha", "rkl"):
        assert valid in message


@pytest.mark.parametrize("pi", [0.0, 1.0, -0.5, 1.5, math.pi])
def test_weighted_js_rejects_a_bad_mixing_weight(pi):
    with pytest.raises(ValueError, match="0 < pi < 1"):
        divergences.get("weighted_js", pi=pi)
    with pytest.raises(ValueError, match="0 < pi < 1"):
        WeightedJensenShannon(pi)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 0, 1, math.inf, -math.inf, math.nan])
def test_alpha_rejects_zero_one_and_non_finite(alpha):
    with pytest.raises(ValueError, match="alpha"):
        divergences.get("alpha", alpha=alpha)


def test_registering_a_name_twice_is_rejected():
    before = divergences.names()
    with pytest.raises(ValueError, match="registered twice"):
        divergences._register(KL)
    assert divergences.names() == before
