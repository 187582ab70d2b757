r"""f-divergences and their variational (Fenchel) representation.

Every divergence here is a tiny stateless object that carries one row of the f-GAN tables
(Nowozin, Cseke & Tomioka, 2016): the generator function :math:`f`, its convex conjugate
:math:`f^*`, its derivative :math:`f'` (the optimal critic is :math:`T^* = f'(p/q)`), the output
activation :math:`g_f` that maps a raw critic output :math:`v \in \mathbb{R}` into
:math:`\mathrm{dom} f^*`, and a numerically stable form of :math:`f^*(g_f(v))`.

.. math::

    D_f(P \| Q) = \int q(x) f\!\left(\frac{p(x)}{q(x)}\right) dx
    \;\ge\; \sup_T \; \mathbb{E}_P[T(x)] - \mathbb{E}_Q[f^*(T(x))].

Look a divergence up by name with :func:`get`; :func:`names` lists the registry.

>>> import torch
>>> kl = get("kl")
>>> u = torch.tensor([0.5, 2.0], dtype=torch.float64)
>>> bool(torch.allclose(kl.f_star(kl.f_prime(u)), u * kl.f_prime(u) - kl.f(u)))
True
"""

import math

import torch
import torch.nn.functional as F

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


def _outside(t, inside):
    """Return ``t`` where ``inside`` holds and ``+inf`` elsewhere (f* is +inf off its domain)."""
    return torch.where(inside, t, torch.full_like(t, _INF))


def _log_softplus(x):
    """``log(softplus(x))`` without underflow to ``-inf`` for very negative ``x``."""
    return torch.where(x < -30.0, x, torch.log(F.softplus(x.clamp(min=-30.0))))


class Divergence:
    r"""One row of the f-GAN table.

    Subclasses define :meth:`f`, :meth:`f_star`, :meth:`f_prime` and :meth:`activation`, and may
    override :meth:`f_star_activation` with a stable closed form and :meth:`ratio` with the
    inverse of :math:`f'`.

    :cvar str name: registry name.
    :cvar str default_generator_objective: ``"nonsaturating"`` (maximize
        :math:`\mathbb{E}_Q[g_f(V)]`) or ``"saturating"`` (minimize
        :math:`-\mathbb{E}_Q[f^*(g_f(V))]`), the one measured to fit a 1-D Gaussian reliably.
    :cvar str overflow_hint: the likely cause when a loss with this divergence turns non-finite.
    """

    name = ""
    default_generator_objective = "nonsaturating"
    overflow_hint = "the critic's output grew without bound; lower the critic's learning rate"

    def f(self, u):
        """The convex generator :math:`f(u)`, :math:`u \\ge 0`, with :math:`f(1) = 0`."""
        raise NotImplementedError

    def f_star(self, t):
        """The convex conjugate :math:`f^*(t) = \\sup_u \\{ut - f(u)\\}`; ``+inf`` off its domain."""
        raise NotImplementedError

    def f_prime(self, u):
        """:math:`f'(u)`: the optimal critic value at density ratio ``u = p/q``."""
        raise NotImplementedError

    def activation(self, v):
        """The output activation :math:`g_f`, mapping a raw critic output into ``dom f*``."""
        raise NotImplementedError

    def f_star_activation(self, v):
        """:math:`f^*(g_f(v))`; subclasses override it with a numerically stable form."""
        return self.f_star(self.activation(v))

    def ratio(self, t):
        """The density ratio :math:`p/q` read off a critic value ``t`` (inverse of :math:`f'`)."""
        raise NotImplementedError(f"{self.name} has no invertible f'; no density-ratio read-out")

    def __repr__(self):
        return f"{type(self).__name__}()"


class TotalVariation(Divergence):
    r""":math:`f(u) = \tfrac12 |u - 1|`, so :math:`D_f = \tfrac12 \int |p - q|`."""

    name = "total_variation"
    default_generator_objective = "saturating"

    def f(self, u):
        return 0.5 * (u - 1).abs()

    def f_star(self, t):
        return _outside(t, t.abs() <= 0.5)

    def f_prime(self, u):
        return 0.5 * torch.sign(u - 1)

    def activation(self, v):
        return 0.5 * torch.tanh(v)

    def f_star_activation(self, v):
        return 0.5 * torch.tanh(v)


class KL(Divergence):
    r""":math:`f(u) = u \log u`, so :math:`D_f = \mathrm{KL}(P \| Q)`."""

    name = "kl"
    overflow_hint = (
        "the KL conjugate exp(v - 1) overflowed because the critic's output on generated samples "
        "is large; lower the critic's learning rate or use a bounded divergence such as 'js'"
    )

    def f(self, u):
        return torch.xlogy(u, u)

    def f_star(self, t):
        return torch.exp(t - 1)

    def f_prime(self, u):
        return 1 + torch.log(u)

    def activation(self, v):
        return v

    def ratio(self, t):
        return torch.exp(t - 1)


class ReverseKL(Divergence):
    r""":math:`f(u) = -\log u`, so :math:`D_f = \mathrm{KL}(Q \| P)`.

    The output activation is :math:`g_f(v) = -\mathrm{softplus}(-v) = \log \sigma(v)` (the GAN
    row's), not the f-GAN table's :math:`-e^{-v}`. Both are continuous, strictly increasing
    bijections of :math:`\mathbb{R}` onto :math:`\mathrm{dom} f^* = (-\infty, 0)`, so the critics
    :math:`T = g_f \circ V` they admit, the bound and its supremum are the same. With
    :math:`t = g_f(v) < 0`, :math:`f^*(t) = -1 - \log(-t)` gives

    .. math::

        f^*(g_f(v)) = -1 - \log \mathrm{softplus}(-v),

    and the optimal critic :math:`T^* = -q/p` is :math:`V^* = -\log(e^{q/p} - 1)`. The two
    activations agree to first order as :math:`v \to +\infty` (:math:`g_f \approx -e^{-v}`,
    :math:`f^* \approx v - 1`); they differ as :math:`v \to -\infty`, where the table's real-data
    term :math:`\mathbb{E}_P[e^{-V}]` grows exponentially and this one,
    :math:`\mathbb{E}_P[\mathrm{softplus}(-V)]`, linearly. Measured on the 1-D Gaussian fit
    (``benchmarks/fit_gaussian_1d.py``, ``docs/divergences.md``): with the table's activation one
    spike of :math:`e^{-V}` inflated Adam's second-moment estimate and froze the critic (:math:`\mu`
    ran off to 7.5) or, with clipped gradients, left :math:`s` stuck at 0.31; with this one all
    seeds fit.
    """

    name = "reverse_kl"
    default_generator_objective = "saturating"
    overflow_hint = (
        "the critic's output grew without bound on generated samples; lower the critic's "
        "learning rate or clip its gradients (pyro.optim.ClippedAdam)"
    )

    def f(self, u):
        return -torch.log(u)

    def f_star(self, t):
        return _outside(-1 - torch.log(-t.clamp(max=0)), t < 0)

    def f_prime(self, u):
        return -1 / u

    def activation(self, v):
        return -F.softplus(-v)

    def f_star_activation(self, v):
        return -1 - _log_softplus(-v)

    def ratio(self, t):
        return -1 / t


class Pearson(Divergence):
    r""":math:`f(u) = (u - 1)^2`, so :math:`D_f = \int (p - q)^2 / q`."""

    name = "pearson"

    def f(self, u):
        return (u - 1) ** 2

    def f_star(self, t):
        return 0.25 * t**2 + t

    def f_prime(self, u):
        return 2 * (u - 1)

    def activation(self, v):
        return v

    def ratio(self, t):
        return 1 + t / 2


class Neyman(Divergence):
    r""":math:`f(u) = (1 - u)^2 / u`, so :math:`D_f = \int (p - q)^2 / p`.

    The output activation is :math:`g_f(v) = 1 - \mathrm{softplus}(-v)^2`, not the f-GAN table's
    :math:`1 - e^{-v}`. Since :math:`\mathrm{softplus}(-v)` is a continuous decreasing bijection
    of :math:`\mathbb{R}` onto :math:`(0, \infty)`, :math:`g_f` is a continuous increasing
    bijection onto :math:`(-\infty, 1)`, the interior of :math:`\mathrm{dom} f^*`, like the table's;
    the critics :math:`T = g_f \circ V`, the bound and its supremum are the same. With
    :math:`\sqrt{1 - g_f(v)} = \mathrm{softplus}(-v) > 0` and :math:`f^*(t) = 2 - 2\sqrt{1 - t}`,

    .. math::

        f^*(g_f(v)) = 2 - 2\,\mathrm{softplus}(-v),

    and the optimal critic :math:`T^* = 1 - (q/p)^2` is :math:`\mathrm{softplus}(-V^*) = q/p`. The
    table's form is the same with :math:`e^{-v/2}` in place of :math:`\mathrm{softplus}(-v)`; both
    decay exponentially as :math:`v \to +\infty` and they differ as :math:`v \to -\infty`, where the
    table's conjugate term :math:`-2e^{-V/2}` runs to :math:`-\infty` exponentially and overflows
    float32 within 20-250 steps of the 1-D Gaussian fit (``docs/divergences.md``); this one is
    linear.

    .. note:: :math:`\chi^2(P \| Q)` is infinite whenever the generator has heavier tails than
        the data: for :math:`Q = \mathcal{N}(\mu, s^2)`, :math:`P = \mathcal{N}(m, \sigma^2)` it
        is finite only for :math:`s < \sqrt 2\,\sigma`. The critic's supremum is then unbounded
        and :math:`V \to -\infty` on generated samples where there are no data. A critic penalty
        on the output size (``docs/divergences.md``) bounds it; without one the fit from a wide
        start stalls.
    """

    name = "neyman"
    default_generator_objective = "saturating"
    overflow_hint = (
        "Neyman chi^2 is infinite while the generator puts mass where the data have (almost) "
        "none, and the critic's output then runs to -inf on generated samples; penalize the "
        "critic's output size, start the generator narrower than the data, or use 'js'"
    )

    def f(self, u):
        return (1 - u) ** 2 / u

    def f_star(self, t):
        return _outside(2 - 2 * torch.sqrt((1 - t).clamp(min=0)), t <= 1)

    def f_prime(self, u):
        return 1 - u**-2

    def activation(self, v):
        return 1 - F.softplus(-v) ** 2

    def f_star_activation(self, v):
        return 2 - 2 * F.softplus(-v)

    def ratio(self, t):
        return (1 - t) ** -0.5


class SquaredHellinger(Divergence):
    r""":math:`f(u) = (\sqrt u - 1)^2`, so :math:`D_f = \int (\sqrt p - \sqrt q)^2`."""

    name = "squared_hellinger"
    default_generator_objective = "saturating"

    def f(self, u):
        return (torch.sqrt(u) - 1) ** 2

    def f_star(self, t):
        return _outside(t / (1 - t), t < 1)

    def f_prime(self, u):
        return 1 - u**-0.5

    def activation(self, v):
        return -torch.expm1(-v)

    def f_star_activation(self, v):
        return torch.expm1(v)

    def ratio(self, t):
        return (1 - t) ** -2


class JensenShannon(Divergence):
    r""":math:`f(u) = u \log u - (u + 1) \log\frac{u + 1}{2}`, so :math:`D_f = 2\,\mathrm{JSD}(P, Q)`."""

    name = "js"

    def f(self, u):
        return torch.xlogy(u, u) - torch.xlogy(u + 1, (u + 1) / 2)

    def f_star(self, t):
        return _outside(-torch.log(2 - torch.exp(t.clamp(max=math.log(2)))), t < math.log(2))

    def f_prime(self, u):
        return torch.log(2 * u / (1 + u))

    def activation(self, v):
        return math.log(2) - F.softplus(-v)

    def f_star_activation(self, v):
        return F.softplus(v) - math.log(2)

    def ratio(self, t):
        return torch.exp(t) / (2 - torch.exp(t))


class GAN(Divergence):
    r""":math:`f(u) = u \log u - (u + 1)\log(u + 1)`: the original GAN,
    :math:`D_f = 2\,\mathrm{JSD}(P, Q) - \log 4`."""

    name = "gan"

    def f(self, u):
        return torch.xlogy(u, u) - torch.xlogy(u + 1, u + 1)

    def f_star(self, t):
        return _outside(-torch.log(-torch.expm1(t.clamp(max=0))), t < 0)

    def f_prime(self, u):
        return torch.log(u / (u + 1))

    def activation(self, v):
        return -F.softplus(-v)

    def f_star_activation(self, v):
        return F.softplus(v)

    def ratio(self, t):
        return torch.exp(t) / -torch.expm1(t)


class WeightedJensenShannon(Divergence):
    r"""The :math:`\pi`-weighted Jensen-Shannon divergence,
    :math:`f(u) = \pi u \log u - (1 - \pi + \pi u)\log(1 - \pi + \pi u)`.

    :param float pi: the mixing weight in (0, 1) (not 3.14159); ``pi = 1/2`` gives half of
        :class:`JensenShannon`.
    """

    name = "weighted_js"

    def __init__(self, pi=0.5):
        if not 0.0 < pi < 1.0:
            raise ValueError(f"Expected a mixing weight 0 < pi < 1, actual pi={pi}")
        self.pi = float(pi)

    def f(self, u):
        pi = self.pi
        m = 1 - pi + pi * u
        return pi * torch.xlogy(u, u) - torch.xlogy(m, m)

    def f_star(self, t):
        pi = self.pi
        bound = -pi * math.log(pi)
        safe = t.clamp(max=bound)
        value = (1 - pi) * (math.log(1 - pi) - torch.log(-torch.expm1(safe / pi + math.log(pi))))
        return _outside(value, t < bound)

    def f_prime(self, u):
        pi = self.pi
        return pi * torch.log(u / (1 - pi + pi * u))

    def activation(self, v):
        return -self.pi * math.log(self.pi) - F.softplus(-v)

    def f_star_activation(self, v):
        # pi * exp(t / pi) = sigmoid(v) ** (1 / pi) for t = activation(v).
        pi = self.pi
        log_power = -F.softplus(-v) / pi
        return (1 - pi) * (math.log(1 - pi) - torch.log(-torch.expm1(log_power)))

    def ratio(self, t):
        e = torch.exp(t / self.pi)
        return e * (1 - self.pi) / (1 - self.pi * e)

    def __repr__(self):
        return f"WeightedJensenShannon(pi={self.pi})"


class Alpha(Divergence):
    r"""The alpha-divergence,
    :math:`f(u) = \frac{u^\alpha - 1 - \alpha(u - 1)}{\alpha(\alpha - 1)}`,
    :math:`\alpha \notin \{0, 1\}`. ``alpha=0.5`` is twice the squared Hellinger distance and
    ``alpha=2`` half of Pearson :math:`\chi^2`.

    The output activation is :math:`g_f(v) = \frac{1}{1-\alpha} - \mathrm{softplus}(-v)` for
    :math:`\alpha < 1` (the f-GAN table) and :math:`g_f(v) = \mathrm{softplus}(v) -
    \frac{1}{\alpha - 1}` for :math:`\alpha > 1`: the table prints the identity there, which
    leaves the region :math:`t > -1/(\alpha - 1)` where the conjugate's power is real (below
    it :math:`f^* = -1/\alpha`).

    :param float alpha: the order.
    """

    name = "alpha"

    def __init__(self, alpha=0.5):
        if alpha in (0.0, 1.0) or not math.isfinite(alpha):
            raise ValueError(f"Expected alpha not in {{0, 1}} and finite, actual alpha={alpha}")
        self.alpha = float(alpha)

    def f(self, u):
        a = self.alpha
        return (u**a - 1 - a * (u - 1)) / (a * (a - 1))

    def f_star(self, t):
        a = self.alpha
        s = 1 + t * (a - 1)
        value = (s.clamp(min=0) ** (a / (a - 1)) - 1) / a
        if a > 1:
            # For s <= 0 the supremum over u >= 0 sits at u = 0: f*(t) = -f(0) = -1/alpha.
            return value
        # At s = 0 the power gives -1/alpha (alpha < 0, the lsc closure) or +inf (0 < alpha < 1).
        return _outside(value, s >= 0)

    def f_prime(self, u):
        a = self.alpha
        return (u ** (a - 1) - 1) / (a - 1)

    def activation(self, v):
        a = self.alpha
        if a < 1:
            return 1 / (1 - a) - F.softplus(-v)
        return F.softplus(v) - 1 / (a - 1)

    def f_star_activation(self, v):
        # With s = 1 + t (alpha - 1): s = (1 - alpha) softplus(-v) or (alpha - 1) softplus(v).
        a = self.alpha
        log_s = math.log(abs(1 - a)) + _log_softplus(-v if a < 1 else v)
        return (torch.exp(log_s * (a / (a - 1))) - 1) / a

    def ratio(self, t):
        a = self.alpha
        return (1 + t * (a - 1)) ** (1 / (a - 1))

    def __repr__(self):
        return f"Alpha(alpha={self.alpha})"


_REGISTRY = {}


def _register(cls, *aliases):
    for key in (cls.name, *aliases):
        if key in _REGISTRY:
            raise ValueError(f"Divergence name {key!r} is registered twice")
        _REGISTRY[key] = cls


for _cls in (Pearson, Neyman, SquaredHellinger, GAN, WeightedJensenShannon, Alpha):
    _register(_cls)
_register(TotalVariation, "tv")
_register(KL, "kullback_leibler")
_register(ReverseKL, "rkl")
_register(JensenShannon, "jensen_shannon")


def names():
    """The registered divergence names (aliases included), sorted."""
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """Look a divergence up by name, or pass a :class:`Divergence` through unchanged.

    :param name: a registered name (see :func:`names`) or a :class:`Divergence` instance.
    :param kwargs: constructor arguments, e.g. ``pi`` for ``"weighted_js"``, ``alpha`` for
        ``"alpha"``.
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
