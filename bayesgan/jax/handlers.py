r"""Likelihood relaxation and instance noise as a NumPyro handler (the torch side's
:func:`bayesgan.handlers.relax`).

:func:`relax` replaces the point-mass observation :math:`\delta(x - G(z))` by
:math:`\mathcal{N}(x \mid G(z), \sigma^2 I)`: with ``where="fake"`` only the generated samples
carry the noise (the paper's relaxation), with ``where="both"`` the observed data get
:math:`\sigma\epsilon'` too (instance noise, Sønderby et al. 2016), drawn from the model's
:func:`numpyro.prng_key` (so the run must be seeded, as the objectives do). ``scale`` may be
a traced array: a schedule is ``relax(model, scale=schedule(step))`` inside the user's step.

>>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
>>> from numpyro import handlers
>>> def model(x):
...     with numpyro.plate("data", x.shape[0]):
...         numpyro.sample("x", dist.Delta(jnp.zeros(x.shape), event_dim=1), obs=x)
>>> tr = handlers.trace(relax(model, scale=0.1)).get_trace(jnp.zeros((3, 2)))
>>> type(tr["x"]["fn"]).__name__
'Independent'
"""

import jax
import numpyro
import numpyro.distributions as dist
from numpyro.primitives import _PYRO_STACK, Messenger

__all__ = ["RelaxMessenger", "relax"]


class RelaxMessenger(Messenger):
    """The messenger behind :func:`relax`; ``rng_key`` draws the data's noise (``"both"``)."""

    def __init__(self, fn=None, *, scale, where="fake", site="x", rng_key=None):
        if where not in ("fake", "both"):
            raise ValueError(f"Expected where 'fake' (relaxation) or 'both' (instance noise), actual {where!r}")
        if isinstance(scale, (int, float)) and not scale > 0:
            raise ValueError(f"Expected scale > 0, actual {scale!r}")
        self.scale, self.where, self.site, self.rng_key = scale, where, site, rng_key
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["name"] != self.site:
            return
        fn = msg["fn"]
        base = fn.base_dist if isinstance(fn, dist.ExpandedDistribution) else fn
        if not isinstance(base, dist.Delta):
            while hasattr(base, "base_dist"):  # name Normal, not its Independent wrapper
                base = base.base_dist
            raise ValueError(
                f"Expected a Delta (point-mass) observation at {self.site!r} to relax, actual "
                f"{type(base).__name__}; a model that already has a likelihood needs no relax()"
            )
        loc = jax.numpy.broadcast_to(base.v, fn.shape())
        msg["fn"] = dist.Normal(loc, self.scale).to_event(base.event_dim)
        if msg["is_observed"] and self.where == "both":
            if self.rng_key is None:
                raise ValueError("Expected a seeded model for instance noise (where='both'), actual no PRNG key")
            obs = msg["value"]
            msg["value"] = obs + self.scale * jax.random.normal(self.rng_key, obs.shape, obs.dtype)


def relax(fn, *, scale, where="fake", site="x"):
    r"""Relax the point-mass observation of a NumPyro model to :math:`\mathcal{N}(G(z), \sigma^2 I)`.

    :param callable fn: the model.
    :param scale: :math:`\sigma > 0` (a float or an array).
    :param str where: ``"fake"`` (relaxation) or ``"both"`` (instance noise).
    :param str site: the observation site.
    :returns: the relaxed model.
    """
    RelaxMessenger(scale=scale, where=where, site=site)  # check the arguments now

    def relaxed(*args, **kwargs):
        key = None
        if where == "both":
            if not _PYRO_STACK:  # prng_key() would only warn and return None
                raise ValueError("Expected a seeded model for instance noise (where='both'), actual no PRNG key")
            key = numpyro.prng_key()
        with RelaxMessenger(scale=scale, where=where, site=site, rng_key=key):
            return fn(*args, **kwargs)

    return relaxed
