r"""Critic penalties, weight clipping and the generator's gradient regularization, as pure
functions of JAX arrays: the torch side's :mod:`bayesgan.penalties` with the same names,
weights and formulas.

A critic penalty is ``penalty(rng_key, critic_fn, real, fake) -> scalar`` with
``critic_fn(x)`` the critic at the parameters being differentiated; input gradients come from
:func:`jax.grad`, and differentiating the penalty with respect to the critic's parameters is
double differentiation. ``a + b`` sums two penalties. :class:`Lazy` penalties also take the
step counter (``uses_step``); the objectives pass ``step=state.step``.

>>> import jax.numpy as jnp
>>> w = jnp.array([3.0, 4.0])
>>> critic_fn = lambda x: x @ w
>>> x = jnp.ones((8, 2))
>>> float(GradientPenalty(1.0)(None, critic_fn, x, x + 1))   # (||w|| - 1)^2 = (5 - 1)^2
16.0
"""

import jax
import jax.numpy as jnp

__all__ = [
    "GeneratorGradientPenalty",
    "GradientPenalty",
    "Lazy",
    "OutputPenalty",
    "Penalty",
    "R1",
    "R2",
    "WGANDiv",
    "WeightClipping",
]


def _check_weight(name, value):
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"Expected {name} >= 0, actual {value!r}")


def _input_gradient(critic_fn, x):
    """``d critic(x) / d x`` per sample, flattened to ``[n, -1]``."""
    grad = jax.grad(lambda y: critic_fn(y).sum())(x)
    return grad.reshape(grad.shape[0], -1)


def _norm(g):
    """Row norms with a zero (sub)gradient at zero, as torch's ``norm`` has."""
    sq = (g**2).sum(1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


class Penalty:
    """Base class: a weighted critic penalty; ``a + b`` sums two penalties."""

    uses_step = False

    def __call__(self, rng_key, critic_fn, real, fake):
        raise NotImplementedError

    def __add__(self, other):
        if not isinstance(other, Penalty):
            return NotImplemented
        return _Sum(self, other)


def _call(penalty, rng_key, critic_fn, real, fake, step):
    if getattr(penalty, "uses_step", False):
        return penalty(rng_key, critic_fn, real, fake, step=step)
    return penalty(rng_key, critic_fn, real, fake)


class _Sum(Penalty):
    def __init__(self, *terms):
        self.terms = terms
        self.uses_step = any(getattr(t, "uses_step", False) for t in terms)

    def __call__(self, rng_key, critic_fn, real, fake, *, step=None):
        keys = jax.random.split(rng_key, len(self.terms)) if rng_key is not None else [None] * len(self.terms)
        return sum(_call(term, k, critic_fn, real, fake, step) for term, k in zip(self.terms, keys))

    def __repr__(self):
        return " + ".join(repr(t) for t in self.terms)


class GradientPenalty(Penalty):
    r"""WGAN-GP: :math:`\lambda\,\mathbb{E}_{\hat x}[(\|\nabla D(\hat x)\| - c)^2]` at random
    interpolates :math:`\hat x = \epsilon x + (1 - \epsilon)\tilde x`; one-sided: only norms above
    :math:`c`.

    :param float weight: :math:`\lambda`.
    :param float center: :math:`c`.
    :param bool one_sided: penalize only norms above ``center``.
    """

    def __init__(self, weight=10.0, *, center=1.0, one_sided=False):
        _check_weight("weight", weight)
        self.weight, self.center, self.one_sided = weight, center, one_sided

    def __call__(self, rng_key, critic_fn, real, fake):
        shape = (real.shape[0],) + (1,) * (real.ndim - 1)
        eps = jnp.full(shape, 0.5, real.dtype) if rng_key is None else jax.random.uniform(rng_key, shape, real.dtype)
        gap = _norm(_input_gradient(critic_fn, eps * real + (1 - eps) * fake)) - self.center
        if self.one_sided:
            gap = jnp.maximum(gap, 0.0)
        return self.weight * (gap**2).mean()

    def __repr__(self):
        return f"GradientPenalty({self.weight}, center={self.center}, one_sided={self.one_sided})"


class R1(Penalty):
    r""":math:`\frac{\gamma}{2}\,\mathbb{E}_P\|\nabla_x D(x)\|^2` (Mescheder et al., 2018).

    :param float gamma: :math:`\gamma`.
    """

    def __init__(self, gamma=10.0):
        _check_weight("gamma", gamma)
        self.gamma = gamma

    def _points(self, real, fake):
        return real

    def __call__(self, rng_key, critic_fn, real, fake):
        grad = _input_gradient(critic_fn, self._points(real, fake))
        return 0.5 * self.gamma * (grad**2).sum(1).mean()

    def __repr__(self):
        return f"{type(self).__name__}({self.gamma})"


class R2(R1):
    r""":math:`\frac{\gamma}{2}\,\mathbb{E}_Q\|\nabla_x D(x)\|^2`, on generated data."""

    def _points(self, real, fake):
        return fake


class WGANDiv(Penalty):
    r"""WGAN-div: :math:`\frac{k}{2}(\mathbb{E}_P\|\nabla D\|^p + \mathbb{E}_Q\|\nabla D\|^p)`.

    :param float k: the weight.
    :param float p: the power.
    """

    def __init__(self, k=2.0, p=6.0):
        _check_weight("k", k)
        if not p > 0:
            raise ValueError(f"Expected p > 0, actual {p!r}")
        self.k, self.p = k, p

    def __call__(self, rng_key, critic_fn, real, fake):
        norms = [(_norm(_input_gradient(critic_fn, x)) ** self.p).mean() for x in (real, fake)]
        return 0.5 * self.k * (norms[0] + norms[1])

    def __repr__(self):
        return f"WGANDiv(k={self.k}, p={self.p})"


class OutputPenalty(Penalty):
    r""":math:`w\,(\mathbb{E}_P[V^2] + \mathbb{E}_Q[V^2])` on the critic's raw output.

    :param float weight: :math:`w`.
    """

    def __init__(self, weight=0.1):
        _check_weight("weight", weight)
        self.weight = weight

    def __call__(self, rng_key, critic_fn, real, fake):
        return self.weight * ((critic_fn(real) ** 2).mean() + (critic_fn(fake) ** 2).mean())

    def __repr__(self):
        return f"OutputPenalty({self.weight})"


class Lazy(Penalty):
    r"""Apply a penalty on one step in ``every``, multiplied by ``every`` (StyleGAN2-ADA's lazy
    regularization), the torch side's :class:`bayesgan.penalties.Lazy` as a pure function of the
    step counter: on steps :math:`0, k, 2k, \dots` the value is :math:`k` times the penalty's,
    on the others 0 and the penalty is not evaluated (:func:`jax.lax.cond`). The objectives call
    it with ``step=state.step``, which counts the calls as the torch side's ``calls`` does.

    .. note:: With Adam the lazy steps see a gradient ``every`` times larger; StyleGAN2-ADA uses
        ``lr * c`` and ``betas ** c`` with ``c = every / (every + 1)`` for the critic.

    :param Penalty penalty: the penalty to apply lazily.
    :param int every: the period :math:`k`.

    >>> import jax.numpy as jnp
    >>> lazy = Lazy(R1(1.0), every=4)
    >>> critic_fn = lambda x: x @ jnp.array([3.0, 4.0])      # R1 = 0.5 * 25
    >>> x = jnp.ones((8, 2))
    >>> [float(lazy(None, critic_fn, x, x, step=s)) for s in range(5)]
    [50.0, 0.0, 0.0, 0.0, 50.0]
    """

    uses_step = True

    def __init__(self, penalty, *, every=16):
        if not callable(penalty):
            raise ValueError(f"Expected penalty to be callable, actual {type(penalty).__name__}")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"Expected every to be an int >= 1, actual {every!r}")
        self.penalty, self.every = penalty, every

    def __call__(self, rng_key, critic_fn, real, fake, *, step=None):
        if step is None:
            raise ValueError("Expected the step counter (step=state.step) for a Lazy penalty, actual None")

        def active():
            value = _call(self.penalty, rng_key, critic_fn, real, fake, step)
            return jnp.asarray(self.every * value, dtype=real.dtype)

        return jax.lax.cond(jnp.asarray(step) % self.every == 0, active, lambda: jnp.zeros((), real.dtype))

    def __repr__(self):
        return f"Lazy({self.penalty!r}, every={self.every})"


class WeightClipping:
    r"""The original WGAN's constraint: clip every critic weight to :math:`[-c, c]` at the start
    of each step (``constraint=``); ``constraint(params)`` returns the clipped parameters.

    :param float clip: :math:`c`.
    """

    def __init__(self, clip=0.01):
        if not clip > 0:
            raise ValueError(f"Expected clip > 0, actual {clip!r}")
        self.clip = clip

    def __call__(self, params):
        return jax.tree.map(lambda p: jnp.clip(p, -self.clip, self.clip), params)

    def __repr__(self):
        return f"WeightClipping({self.clip})"


class GeneratorGradientPenalty:
    r"""The generator's gradient regularization by double differentiation:
    :math:`\lambda\|\nabla_\psi L_G\|^2` (``wrt="parameters"``) or
    :math:`\lambda\frac1n\sum_i\|\partial L_G/\partial\tilde x_i\|` (``wrt="samples"``).

    Objectives call it as ``penalty(objective, params, samples_objective, fake)`` with
    ``objective(params) -> (loss, aux)`` and ``samples_objective(fake) -> loss``.

    :param float weight: :math:`\lambda`.
    :param str wrt: ``"parameters"`` or ``"samples"``.
    """

    def __init__(self, weight, *, wrt="parameters"):
        _check_weight("weight", weight)
        if wrt not in ("parameters", "samples"):
            raise ValueError(f"Expected wrt in ('parameters', 'samples'), actual {wrt!r}")
        self.weight, self.wrt = weight, wrt

    def __call__(self, objective, params, samples_objective, fake):
        if self.wrt == "samples":
            grad = jax.grad(samples_objective)(fake)
            return self.weight * _norm(grad.reshape(grad.shape[0], -1)).mean()
        grads = jax.grad(lambda p: objective(p)[0])(params)
        return self.weight * sum((g**2).sum() for g in jax.tree.leaves(grads))

    def __repr__(self):
        return f"GeneratorGradientPenalty({self.weight}, wrt={self.wrt!r})"
