r"""f-divergences as named tuples of pure JAX functions, mirroring :mod:`bayesgan.divergences`.

Each :class:`Divergence` carries one row of the f-GAN table (Nowozin et al., 2016): ``f``,
``f_star`` (:math:`+\infty` off its domain), ``f_prime`` (the optimal critic
:math:`T^* = f'(p/q)`), the output ``activation`` :math:`g_f`, a numerically stable
``f_star_activation`` :math:`= f^*(g_f(v))` and ``ratio`` (the inverse of :math:`f'`). Names,
activations and stable forms are the torch side's, so both sides give the same numbers.

.. math::

    D_f(P \| Q) \;\ge\; \sup_T \; \mathbb{E}_P[T(x)] - \mathbb{E}_Q[f^*(T(x))].

>>> import jax.numpy as jnp
>>> kl = get("kl")
>>> u = jnp.array([0.5, 2.0])
>>> bool(jnp.allclose(kl.f_star(kl.f_prime(u)), u * kl.f_prime(u) - kl.f(u)))
True
"""

import math
from typing import Callable, NamedTuple

import jax.numpy as jnp
from jax.nn import softplus
from jax.scipy.special import xlogy

__all__ = [
    "Divergence",
    "TotalVariation",
    "KL",
    "ReverseKL",
    "Pearson",
    "Neyman",
    "SquaredHellinger",
    "JensenShannon",
    "GAN",
    "WeightedJensenShannon",
    "Alpha",
    "get",
    "names",
]

_INF = float("inf")
_HINT = "the critic's output grew without bound; lower the critic's learning rate"


class Divergence(NamedTuple):
    """One row of the f-GAN table as pure functions; :func:`get` builds them by name."""

    name: str
    f: Callable
    f_star: Callable
    f_prime: Callable
    activation: Callable
    f_star_activation: Callable
    ratio: Callable
    default_generator_objective: str = "nonsaturating"
    overflow_hint: str = _HINT
    label: str = ""

    def __repr__(self):
        return self.label


def _outside(t, inside):
    return jnp.where(inside, t, _INF)


def _log_softplus(x):
    return jnp.where(x < -30.0, x, jnp.log(softplus(jnp.maximum(x, -30.0))))


def _no_ratio(name):
    def ratio(t):
        raise NotImplementedError(f"{name} has no invertible f'; no density-ratio read-out")

    return ratio


def TotalVariation():
    r""":math:`f(u) = \tfrac12 |u - 1|`."""
    return Divergence(
        "total_variation",
        f=lambda u: 0.5 * jnp.abs(u - 1),
        f_star=lambda t: _outside(t, jnp.abs(t) <= 0.5),
        f_prime=lambda u: 0.5 * jnp.sign(u - 1),
        activation=lambda v: 0.5 * jnp.tanh(v),
        f_star_activation=lambda v: 0.5 * jnp.tanh(v),
        ratio=_no_ratio("total_variation"),
        default_generator_objective="saturating",
        label="TotalVariation()",
    )


def KL():
    r""":math:`f(u) = u \log u`: :math:`\mathrm{KL}(P \| Q)`."""
    return Divergence(
        "kl",
        f=lambda u: xlogy(u, u),
        f_star=lambda t: jnp.exp(t - 1),
        f_prime=lambda u: 1 + jnp.log(u),
        activation=lambda v: v,
        f_star_activation=lambda v: jnp.exp(v - 1),
        ratio=lambda t: jnp.exp(t - 1),
        overflow_hint=(
            "the KL conjugate exp(v - 1) overflowed because the critic's output on generated "
            "samples is large; lower the critic's learning rate or use a bounded divergence such as 'js'"
        ),
        label="KL()",
    )


def ReverseKL():
    r""":math:`f(u) = -\log u`, activation :math:`-\mathrm{softplus}(-v)` (see the torch side)."""
    return Divergence(
        "reverse_kl",
        f=lambda u: -jnp.log(u),
        f_star=lambda t: _outside(-1 - jnp.log(-jnp.minimum(t, 0.0)), t < 0),
        f_prime=lambda u: -1 / u,
        activation=lambda v: -softplus(-v),
        f_star_activation=lambda v: -1 - _log_softplus(-v),
        ratio=lambda t: -1 / t,
        default_generator_objective="saturating",
        label="ReverseKL()",
    )


def Pearson():
    r""":math:`f(u) = (u - 1)^2`."""
    return Divergence(
        "pearson",
        f=lambda u: (u - 1) ** 2,
        f_star=lambda t: 0.25 * t**2 + t,
        f_prime=lambda u: 2 * (u - 1),
        activation=lambda v: v,
        f_star_activation=lambda v: 0.25 * v**2 + v,
        ratio=lambda t: 1 + t / 2,
        label="Pearson()",
    )


def Neyman():
    r""":math:`f(u) = (1 - u)^2 / u`, activation :math:`1 - \mathrm{softplus}(-v)^2`."""
    return Divergence(
        "neyman",
        f=lambda u: (1 - u) ** 2 / u,
        f_star=lambda t: _outside(2 - 2 * jnp.sqrt(jnp.maximum(1 - t, 0.0)), t <= 1),
        f_prime=lambda u: 1 - u**-2.0,
        activation=lambda v: 1 - softplus(-v) ** 2,
        f_star_activation=lambda v: 2 - 2 * softplus(-v),
        ratio=lambda t: (1 - t) ** -0.5,
        default_generator_objective="saturating",
        label="Neyman()",
    )


def SquaredHellinger():
    r""":math:`f(u) = (\sqrt u - 1)^2`."""
    return Divergence(
        "squared_hellinger",
        f=lambda u: (jnp.sqrt(u) - 1) ** 2,
        f_star=lambda t: _outside(t / (1 - t), t < 1),
        f_prime=lambda u: 1 - u**-0.5,
        activation=lambda v: -jnp.expm1(-v),
        f_star_activation=lambda v: jnp.expm1(v),
        ratio=lambda t: (1 - t) ** -2.0,
        default_generator_objective="saturating",
        label="SquaredHellinger()",
    )


def JensenShannon():
    r""":math:`f(u) = u \log u - (u + 1) \log\frac{u + 1}{2}`: :math:`2\,\mathrm{JSD}`."""
    log2 = math.log(2)
    return Divergence(
        "js",
        f=lambda u: xlogy(u, u) - xlogy(u + 1, (u + 1) / 2),
        f_star=lambda t: _outside(-jnp.log(2 - jnp.exp(jnp.minimum(t, log2))), t < log2),
        f_prime=lambda u: jnp.log(2 * u / (1 + u)),
        activation=lambda v: log2 - softplus(-v),
        f_star_activation=lambda v: softplus(v) - log2,
        ratio=lambda t: jnp.exp(t) / (2 - jnp.exp(t)),
        label="JensenShannon()",
    )


def GAN():
    r""":math:`f(u) = u \log u - (u + 1)\log(u + 1)`: the original GAN."""
    return Divergence(
        "gan",
        f=lambda u: xlogy(u, u) - xlogy(u + 1, u + 1),
        f_star=lambda t: _outside(-jnp.log(-jnp.expm1(jnp.minimum(t, 0.0))), t < 0),
        f_prime=lambda u: jnp.log(u / (u + 1)),
        activation=lambda v: -softplus(-v),
        f_star_activation=lambda v: softplus(v),
        ratio=lambda t: jnp.exp(t) / -jnp.expm1(t),
        label="GAN()",
    )


def WeightedJensenShannon(pi=0.5):
    r"""The :math:`\pi`-weighted Jensen-Shannon divergence.

    :param float pi: the mixing weight in (0, 1).
    """
    if not 0.0 < pi < 1.0:
        raise ValueError(f"Expected a mixing weight 0 < pi < 1, actual pi={pi}")
    pi = float(pi)
    bound = -pi * math.log(pi)

    def f(u):
        m = 1 - pi + pi * u
        return pi * xlogy(u, u) - xlogy(m, m)

    def f_star(t):
        safe = jnp.minimum(t, bound)
        value = (1 - pi) * (math.log(1 - pi) - jnp.log(-jnp.expm1(safe / pi + math.log(pi))))
        return _outside(value, t < bound)

    def f_star_activation(v):
        log_power = -softplus(-v) / pi
        return (1 - pi) * (math.log(1 - pi) - jnp.log(-jnp.expm1(log_power)))

    def ratio(t):
        e = jnp.exp(t / pi)
        return e * (1 - pi) / (1 - pi * e)

    return Divergence(
        "weighted_js",
        f=f,
        f_star=f_star,
        f_prime=lambda u: pi * jnp.log(u / (1 - pi + pi * u)),
        activation=lambda v: bound - softplus(-v),
        f_star_activation=f_star_activation,
        ratio=ratio,
        label=f"WeightedJensenShannon(pi={pi})",
    )


def Alpha(alpha=0.5):
    r"""The alpha-divergence, :math:`\alpha \notin \{0, 1\}` (activations as on the torch side).

    :param float alpha: the order.
    """
    if alpha in (0.0, 1.0) or not math.isfinite(alpha):
        raise ValueError(f"Expected alpha not in {{0, 1}} and finite, actual alpha={alpha}")
    a = float(alpha)

    def f_star(t):
        s = 1 + t * (a - 1)
        value = (jnp.maximum(s, 0.0) ** (a / (a - 1)) - 1) / a
        return value if a > 1 else _outside(value, s >= 0)

    def activation(v):
        return 1 / (1 - a) - softplus(-v) if a < 1 else softplus(v) - 1 / (a - 1)

    def f_star_activation(v):
        log_s = math.log(abs(1 - a)) + _log_softplus(-v if a < 1 else v)
        return (jnp.exp(log_s * (a / (a - 1))) - 1) / a

    return Divergence(
        "alpha",
        f=lambda u: (u**a - 1 - a * (u - 1)) / (a * (a - 1)),
        f_star=f_star,
        f_prime=lambda u: (u ** (a - 1) - 1) / (a - 1),
        activation=activation,
        f_star_activation=f_star_activation,
        ratio=lambda t: (1 + t * (a - 1)) ** (1 / (a - 1)),
        label=f"Alpha(alpha={a})",
    )


_REGISTRY = {}


def _register(factory, name, *aliases):
    for key in (name, *aliases):
        if key in _REGISTRY:
            raise ValueError(f"Divergence name {key!r} is registered twice")
        _REGISTRY[key] = factory


_register(Pearson, "pearson")
_register(Neyman, "neyman")
_register(SquaredHellinger, "squared_hellinger")
_register(GAN, "gan")
_register(WeightedJensenShannon, "weighted_js")
_register(Alpha, "alpha")
_register(TotalVariation, "total_variation", "tv")
_register(KL, "kl", "kullback_leibler")
_register(ReverseKL, "reverse_kl", "rkl")
_register(JensenShannon, "js", "jensen_shannon")


def names():
    """The registered divergence names (aliases included), sorted; the torch side's list."""
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """Look a divergence up by name, or pass a :class:`Divergence` through unchanged.

    :param name: a registered name (see :func:`names`) or a :class:`Divergence`.
    :param kwargs: ``pi`` for ``"weighted_js"``, ``alpha`` for ``"alpha"``.
    :rtype: Divergence

    >>> get("js")
    JensenShannon()
    >>> get("alpha", alpha=2.0)
    Alpha(alpha=2.0)
    """
    if isinstance(name, Divergence):
        if kwargs:
            raise ValueError(f"Expected no keyword arguments with a Divergence instance, actual {kwargs}")
        return name
    key = str(name).lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"Unknown divergence {name!r}; expected one of: {', '.join(names())}")
    return _REGISTRY[key](**kwargs)
