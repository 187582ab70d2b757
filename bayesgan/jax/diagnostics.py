r"""Diagnostics on the JAX side: sharpness by Hessian-vector products (forward-over-reverse,
:func:`jax.jvp` of :func:`jax.grad`), the random weights' KL term, and ArviZ objects through the
torch side's assembly (:mod:`bayesgan.diagnostics.inference_data`).

.. math:: H v = \frac{d}{d\epsilon} \nabla L(\psi + \epsilon v) \Big|_{\epsilon = 0}

>>> import jax.numpy as jnp
>>> A = jnp.array([[3.0, 1.0], [1.0, 2.0]])
>>> values = hessian_eigenvalues(lambda w: 0.5 * w @ A @ w, jnp.array([1.0, 2.0]), k=2)
>>> [round(float(v), 5) for v in values]
[3.61803, 1.38197]
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.kl import kl_divergence

__all__ = ["generator_sharpness", "hessian_eigenvalues", "hessian_trace", "hvp", "to_inference_data"]


def hvp(loss_fn, params, v):
    """The Hessian-vector product :math:`H v` of ``loss_fn`` at ``params`` (pytrees)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _flat_hvp(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    if flat.size == 0:
        raise ValueError("Expected at least one parameter, actual none")
    fn = jax.jit(lambda v: ravel_pytree(hvp(loss_fn, params, unravel(v)))[0])
    return fn, flat.size, flat.dtype


def hessian_eigenvalues(loss_fn, params, *, k=1, num_iterations=100, rng_key=None):
    """The ``k`` largest eigenvalues of the Hessian of ``loss_fn`` at ``params`` by Lanczos
    with full re-orthogonalization (exact once ``num_iterations`` reaches the dimension).

    :param callable loss_fn: ``loss_fn(params) -> scalar``.
    :param params: a pytree.
    :param int k: how many of the largest eigenvalues.
    :param int num_iterations: Lanczos steps.
    :param rng_key: for the start vector (default ``jax.random.key(0)``).
    :returns: an array of ``k`` eigenvalues, largest first.
    """
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"Expected k to be an int >= 1, actual {k!r}")
    fn, n, dtype = _flat_hvp(loss_fn, params)
    v = jax.random.normal(rng_key if rng_key is not None else jax.random.key(0), (n,), dtype)
    basis, alphas, betas = [v / jnp.linalg.norm(v)], [], []
    for j in range(min(n, num_iterations)):
        w = fn(basis[j])
        alphas.append(jnp.dot(w, basis[j]))
        q = jnp.stack(basis)
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = jnp.linalg.norm(w)
        if j == min(n, num_iterations) - 1 or beta <= 1e-10 * max(1.0, abs(float(alphas[-1]))):
            break
        betas.append(beta)
        basis.append(w / beta)
    t = jnp.diag(jnp.stack(alphas))
    if betas:
        off = jnp.stack(betas)
        t = t + jnp.diag(off, 1) + jnp.diag(off, -1)
    return jnp.linalg.eigvalsh(t)[::-1][:k]


def hessian_trace(loss_fn, params, *, num_samples=100, rng_key=None):
    r"""Hutchinson's estimate of :math:`\mathrm{tr}\,H` with Rademacher vectors:
    ``(estimate, standard_error)`` as floats."""
    if not (isinstance(num_samples, int) and num_samples >= 1):
        raise ValueError(f"Expected num_samples to be an int >= 1, actual {num_samples!r}")
    fn, n, dtype = _flat_hvp(loss_fn, params)
    key = rng_key if rng_key is not None else jax.random.key(0)
    vs = jax.random.rademacher(key, (num_samples, n), dtype=dtype)
    draws = jax.vmap(lambda v: jnp.dot(v, fn(v)))(vs)
    stderr = float(draws.std(ddof=1)) / num_samples**0.5 if num_samples > 1 else float("nan")
    return float(draws.mean()), stderr


def generator_sharpness(objective, state, batch, rng_key, **kwargs):
    """The paper's flatness measure: the top Hessian eigenvalue(s) of the generator's loss with
    respect to the generator's (unconstrained) parameters, the critic held fixed, with the
    random numbers of ``rng_key`` (as :meth:`step` would draw them); ``kwargs`` go to
    :func:`hessian_eigenvalues`."""
    model_key, _ = jax.random.split(rng_key)
    critic_params = state.critic_params
    if objective.constraint is not None:
        critic_params = objective.constraint(critic_params)

    def loss_fn(gp):
        real, fake, kl = objective.sample(model_key, gp, batch)
        v_real = objective._critic_apply(critic_params, real, state.critic_state)
        loss = objective._generator_loss(v_real, objective._critic_apply(critic_params, fake, state.critic_state))
        return loss + kl / objective.num_data if objective.guide is not None else loss

    return hessian_eigenvalues(loss_fn, state.generator_params, **kwargs)


def _weights_kl(guide_trace, model_trace, obs_site, num_data):
    r""":math:`\mathrm{KL}(q(w) \| p(w))` over the guide's sample sites outside the observation's
    plates (random weights), analytic where NumPyro knows the pair, else one-sample."""
    obs_frames = {f.name for f in model_trace[obs_site]["cond_indep_stack"]}
    total = jnp.zeros(())
    for name, site in guide_trace.items():
        if site["type"] != "sample" or obs_frames & {f.name for f in site["cond_indep_stack"]}:
            continue  # a local latent (a BiGAN encoder's z): not a weight
        if num_data is None:
            raise ValueError(
                "Expected num_data (the training set's size) for a guide over random weights: the "
                "objective adds KL(q(w) || p(w)) / num_data to the generator's loss"
            )
        prior = model_trace.get(name)
        if prior is None or prior["type"] != "sample":
            raise ValueError(f"Expected the guide's site {name!r} in the model too, actual a guide-only site")
        try:
            kl = kl_divergence(site["fn"], prior["fn"])
        except NotImplementedError:
            kl = site["fn"].log_prob(site["value"]) - prior["fn"].log_prob(site["value"])
        total = total + jnp.sum(kl)
    return total


def _draw(objective, params, x, key, scale, num_samples, num_predictive):
    """One posterior draw: ``(weights, predictive_mean, log_likelihood_row, predictive)``."""
    from .gan import _UnconditionSite

    guide_key, model_key, pred_key = jax.random.split(key, 3)
    model = handlers.substitute(_UnconditionSite(objective.model, objective.obs_site), data=params)
    weights = {}
    if objective.guide is not None:
        guide = handlers.seed(handlers.substitute(objective.guide, data=params), guide_key)
        guide_trace = handlers.trace(guide).get_trace(x)
        weights = {n: s["value"] for n, s in guide_trace.items() if s["type"] == "sample" and not s["cond_indep_stack"]}
        model = handlers.replay(model, trace=guide_trace)

    def run(key, n):
        return handlers.trace(handlers.seed(model, key)).get_trace(jnp.zeros((n,) + x.shape[1:], x.dtype))

    site = run(model_key, num_samples)[objective.obs_site]
    base = site["fn"]
    while hasattr(base, "base_dist"):
        base = base.base_dist
    means = (base.v if hasattr(base, "v") else base.loc).reshape(num_samples, -1)
    flat = x.reshape(x.shape[0], -1)
    d2 = ((flat[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    dim = flat.shape[1]
    log_terms = -0.5 * d2 / scale**2 - dim * (np.log(scale) + 0.5 * np.log(2 * np.pi))
    row = jax.scipy.special.logsumexp(log_terms, 1) - np.log(num_samples)
    predictive = run(pred_key, num_predictive)[objective.obs_site]["value"] if num_predictive else None
    return weights, means.mean(0).reshape(x.shape[1:]), row, predictive


def to_inference_data(objective, state, x, rng_key, *, scale, num_draws=100, num_chains=1, num_samples=1000,
                      num_predictive=None, history=None, protocol=None):
    r"""An ArviZ object for a generator trained on the JAX side and held-out data ``x``, with
    the groups, dimensions and attributes of :func:`bayesgan.diagnostics.to_inference_data`:
    per draw (fresh weights from the guide, fresh dropout masks), the relaxed log-likelihood
    :math:`\ell_{di} = \log \frac1S \sum_j \mathcal{N}(x_i \mid G_{w_d}(z_{dj}), \sigma^2 I)`.

    :param objective: the objective the generator was trained with (after ``init``).
    :param state: its :class:`~bayesgan.jax.GANState`.
    :param x: held-out data ``[n, ...]``.
    :param rng_key: a PRNG key.
    :param float scale: :math:`\sigma`.
    :param int num_draws: draws per chain.
    :param int num_chains: chains.
    :param int num_samples: :math:`S`.
    :param int num_predictive: generated samples per draw (default ``n``; 0 leaves it out).
    :param history: the stacked :class:`~bayesgan.jax.GANInfo` of a ``lax.scan`` run, or a
        dict of lists.
    :param dict protocol: extra attributes.
    """
    from ..diagnostics.inference_data import _assemble, _check_arguments

    x = jnp.asarray(x)
    num_predictive = _check_arguments(x.shape[0], bool(jnp.isfinite(x).all()), scale, num_samples,
                                      num_draws, num_chains, num_predictive)
    params = objective.constrain(state.generator_params)
    draw = jax.jit(lambda key: _draw(objective, params, x, key, scale, num_samples, num_predictive))
    results = [draw(key) for key in jax.random.split(rng_key, num_chains * num_draws)]
    if history is not None and hasattr(history, "_asdict"):
        history = {k: np.asarray(v).tolist() for k, v in history._asdict().items()}
    return _assemble(results, x, obs_site=objective.obs_site, num_chains=num_chains, num_draws=num_draws,
                     scale=scale, num_samples=num_samples, history=history, protocol=protocol, backend="jax")
