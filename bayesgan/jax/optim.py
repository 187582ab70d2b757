r"""Optimizer-side regularizers on the JAX side: sharpness-aware minimization as a composition
of optax transformations (Foret et al., 2021; Kwon et al., 2021) and an exponential moving
average of weights (Yazıcı et al., 2019).

:func:`sam` is :func:`optax.contrib.sam` in its opaque mode (one call of ``update`` = one SAM
step) with an ascent step that gives the torch side's perturbation,

.. math::

    \hat\epsilon = \rho\,\frac{g}{\|g\|_2} \;\;\text{(SAM)}, \qquad
    \hat\epsilon = \rho\,\frac{T_w^2\, g}{\|T_w\, g\|_2}, \; T_w = \mathrm{diag}(|w| + \eta)
    \;\;\text{(adaptive SAM)},

and the base optimizer applied to :math:`\nabla L(w + \hat\epsilon)` at :math:`w`. Give it as
``generator_optimizer=`` and/or ``critic_optimizer=`` of any objective: the objectives pass
``grad_fn`` (the same player's gradient, with the same random numbers) to every optimizer.

>>> import jax.numpy as jnp, optax
>>> opt = sam(optax.sgd(0.1), rho=0.5)
>>> w = jnp.array([3.0, 4.0])
>>> grad_fn = lambda p, i: p                    # L(w) = |w|^2 / 2
>>> updates, _ = opt.update(w, opt.init(w), w, grad_fn=grad_fn)
>>> [round(float(u), 6) for u in updates]      # -0.1 (w + 0.5 w / |w|)
[-0.33, -0.44]
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["EMA", "EMAState", "sam"]


def _norm(tree):
    return jnp.sqrt(sum((x**2).sum() for x in jax.tree.leaves(tree)))


def _ascent(rho, adaptive, eta):
    """The adversarial step as an optax transformation: returns :math:`-\\hat\\epsilon`."""

    def update(updates, state, params=None):
        if adaptive:
            scale = jax.tree.map(lambda w: jnp.abs(w) + eta, params)
            scaled = jax.tree.map(lambda t, g: t * g, scale, updates)
            norm = _norm(scaled)
            direction = jax.tree.map(lambda t, g: t * g, scale, scaled)
        else:
            norm = _norm(updates)
            direction = updates
        factor = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)
        return jax.tree.map(lambda d: -factor * d, direction), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def sam(optimizer, *, rho, adaptive=False, eta=0.0):
    r"""Sharpness-aware minimization around ``optimizer`` (the torch side's
    :class:`~bayesgan.infer.SAM`, per player).

    :param optimizer: the base optax transformation.
    :param float rho: the radius :math:`\rho \ge 0`; ``rho=0`` is the base optimizer.
    :param bool adaptive: adaptive SAM (ASAM; needs a roughly ten times larger ``rho``).
    :param float eta: the ASAM offset :math:`\eta`.
    :returns: an :class:`optax.GradientTransformationExtraArgs` whose ``update`` needs
        ``grad_fn(params, i) -> gradient``.
    """
    if not (isinstance(rho, (int, float)) and rho >= 0):
        raise ValueError(f"Expected rho >= 0, actual {rho!r}")
    if not eta >= 0:
        raise ValueError(f"Expected eta >= 0, actual {eta!r}")
    return optax.contrib.sam(optimizer, _ascent(float(rho), adaptive, float(eta)), sync_period=2, opaque_mode=True)


class EMAState(NamedTuple):
    """The averaged parameters and the number of updates folded in."""

    params: Any
    num_updates: Any


class EMA:
    r"""Exponential moving average of parameters, as pure functions (the torch side's
    :class:`~bayesgan.EMA`):

    .. math::

        \bar\psi_t = \beta\,\bar\psi_{t-1} + (1 - \beta)\,\psi_t \quad (t \ge t_0), \qquad
        \bar\psi_t = \psi_t \quad (t < t_0).

    :param float decay: :math:`\beta` in [0, 1).
    :param int start: the first update that averages; before it the average copies.

    >>> import jax.numpy as jnp
    >>> ema = EMA(decay=0.5)
    >>> state = ema.update(ema.init(jnp.zeros(1)), jnp.ones(1))
    >>> float(state.params[0])
    0.5
    """

    def __init__(self, *, decay=0.999, start=0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"Expected 0 <= decay < 1, actual {decay!r}")
        if not (isinstance(start, int) and start >= 0):
            raise ValueError(f"Expected start to be an int >= 0, actual {start!r}")
        self.decay, self.start = decay, start

    def init(self, params):
        """The average starts at ``params``."""
        return EMAState(jax.tree.map(jnp.asarray, params), jnp.zeros((), jnp.int32))

    def update(self, state, params):
        """Fold ``params`` in; call it after each optimizer step (jit- and scan-friendly)."""
        averaging = state.num_updates >= self.start
        decay = jnp.where(averaging, self.decay, 0.0)
        averaged = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, state.params, params)
        return EMAState(averaged, state.num_updates + 1)

    def __repr__(self):
        return f"EMA(decay={self.decay}, start={self.start})"
