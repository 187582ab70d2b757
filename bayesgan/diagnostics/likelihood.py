r"""Likelihood estimates under the relaxed model, with :math:`z` integrated out by Monte Carlo.

A generator with the point-mass observation has no density; relaxed to
:math:`x \mid z, w \sim \mathcal{N}(G_w(z), \sigma^2 I)` it has one,

.. math:: p(x \mid w) = \mathbb{E}_{p(z)}\big[\mathcal{N}(x \mid G_w(z), \sigma^2 I)\big],

estimated by the log-mean-exp over latent draws (the Parzen-window estimate of the GAN
literature). Random weights add an outer average over posterior draws :math:`w_d \sim q(w)`.
"""

import math

import pyro.distributions as dist
import pyro.poutine as poutine
import torch

__all__ = ["log_likelihood_draws", "relaxed_log_likelihood"]


def _check(scale, num_samples, num_draws):
    if not scale > 0:
        raise ValueError(f"Expected scale > 0, actual {scale!r}")
    if not (isinstance(num_samples, int) and num_samples >= 2):
        raise ValueError(f"Expected num_samples to be an int >= 2, actual {num_samples!r}")
    if not (isinstance(num_draws, int) and num_draws >= 1):
        raise ValueError(f"Expected num_draws to be an int >= 1, actual {num_draws!r}")


def _replayed(model, guide, num_samples):
    """``(model, guide_trace)``: the model with one draw of the guide's weights fixed."""
    if guide is None:
        return model, None
    guide_trace = poutine.trace(guide).get_trace(num_samples=num_samples)
    return poutine.replay(model, trace=guide_trace), guide_trace


def _means(model, num_samples, obs_site, like):
    """``[S, D]`` generator outputs :math:`G(z_j)` at the observation site, checked against
    data ``like`` (``[n, *event_shape]``) and in its dtype."""
    site = poutine.trace(model).get_trace(num_samples=num_samples).nodes.get(obs_site)
    if site is None:
        raise ValueError(f"Expected the model to have a site {obs_site!r}, actual none")
    fn = site["fn"]
    means = (fn.v if isinstance(fn, dist.Delta) else fn.mean).reshape(num_samples, -1).to(like.dtype)
    size = like[0].numel() if like.shape[0] else means.shape[1]
    if size != means.shape[1]:
        raise ValueError(f"Expected data of the generator's size {means.shape[1]}, actual {size}")
    return means


def _log_terms(points, means, scale):
    """``[n, S]`` log mixture terms :math:`\\log \\mathcal{N}(x_i \\mid G(z_j), \\sigma^2 I)`."""
    d2 = (points.pow(2).sum(1, keepdim=True) + means.pow(2).sum(1) - 2 * points @ means.T).clamp(min=0)
    dim = points.shape[1]
    return -0.5 * d2 / scale**2 - 0.5 * dim * math.log(2 * math.pi * scale**2)


def log_likelihood_draws(model, x, *, scale, guide=None, num_draws=1, num_samples=1000, obs_site="x", chunk_size=256):
    r"""Per-draw, per-point relaxed log-likelihoods

    .. math::

        \ell_{di} = \log \frac1S \sum_{j=1}^S \mathcal{N}(x_i \mid G_{w_d}(z_{dj}), \sigma^2 I),
        \qquad w_d \sim q(w), \; z_{dj} \sim p(z),

    the pointwise log-likelihood matrix that PSIS-LOO and WAIC need
    (:func:`~bayesgan.diagnostics.to_inference_data`). Each draw uses fresh latents (and fresh
    dropout masks under :func:`~bayesgan.handlers.mc_dropout`); without a guide the draws
    differ by Monte Carlo noise only.

    :param model: called as ``model(num_samples=S)``; its ``obs_site`` is ``Delta(G(z))`` or
        ``Normal(G(z), ...)`` (its mean is used).
    :param torch.Tensor x: data, ``[n, *event_shape]``.
    :param float scale: :math:`\sigma > 0`.
    :param guide: a guide over the random weights (e.g. :class:`~bayesgan.models.WeightGuide`),
        called as ``guide(num_samples=S)``; ``None`` for deterministic weights.
    :param int num_draws: :math:`D`, the posterior draws.
    :param int num_samples: :math:`S`, the latent draws per posterior draw.
    :param str obs_site: the observation site.
    :param int chunk_size: data points per block (memory ``chunk_size * S``).
    :returns: ``[D, n]``.

    >>> import torch
    >>> from bayesgan.models import GeneratorModel
    >>> model = GeneratorModel(torch.nn.Linear(2, 2), latent_dim=2)
    >>> log_likelihood_draws(model, torch.zeros(3, 2), scale=0.5, num_draws=4, num_samples=50).shape
    torch.Size([4, 3])
    """
    _check(scale, num_samples, num_draws)
    points = x.reshape(x.shape[0], -1)
    rows = []
    with torch.no_grad():
        for _ in range(num_draws):
            means = _means(_replayed(model, guide, num_samples)[0], num_samples, obs_site, x)
            rows.append(torch.cat([
                torch.logsumexp(_log_terms(block, means, scale), 1) for block in points.split(chunk_size)
            ]) - math.log(num_samples))
    return torch.stack(rows)


def relaxed_log_likelihood(model, x, *, scale, num_samples=1000, guide=None, num_draws=1, obs_site="x", chunk_size=256):
    r"""Per-point log density of data under the relaxed model, with :math:`z` integrated out by
    Monte Carlo (the Parzen-window estimate of the GAN literature):

    .. math::

        \log \hat p(x_i) = \log \frac{1}{DS}\sum_{d=1}^D \sum_{j=1}^S
        \mathcal{N}(x_i \mid G_{w_d}(z_{dj}), \sigma^2 I), \qquad z_{dj} \sim p(z),

    with :math:`w_d \sim q(w)` from ``guide`` where the weights are random (the posterior
    predictive density), or the fixed weights (:math:`D = 1`). It is a consistent but
    downward-biased estimate of :math:`\log p(x_i)` (Jensen). The standard error is the
    delta-method one, :math:`\mathrm{sd}(u) / (\sqrt m\, \bar u)`, over the :math:`m = S`
    mixture terms :math:`u` (one draw) or the :math:`m = D` per-draw means (several).

    :param model: a model called as ``model(num_samples=S)`` that draws ``S`` latents and whose
        ``obs_site`` is ``Delta(G(z))`` or ``Normal(G(z), ...)`` (its mean is used).
    :param torch.Tensor x: data, ``[n, *event_shape]``.
    :param float scale: :math:`\sigma > 0`.
    :param int num_samples: :math:`S`.
    :param guide: a guide over the random weights, or ``None``.
    :param int num_draws: :math:`D`.
    :param str obs_site: the observation site.
    :param int chunk_size: data points per block (memory ``chunk_size * S``).
    :returns: ``(log_likelihood, standard_error)``, each ``[n]``.

    >>> import torch
    >>> from bayesgan.models import GeneratorModel
    >>> model = GeneratorModel(torch.nn.Linear(2, 2), latent_dim=2)
    >>> ll, se = relaxed_log_likelihood(model, torch.zeros(3, 2), scale=0.5, num_samples=100)
    >>> ll.shape, se.shape
    (torch.Size([3]), torch.Size([3]))
    """
    _check(scale, num_samples, num_draws)
    if num_draws > 1:
        draws = log_likelihood_draws(model, x, scale=scale, guide=guide, num_draws=num_draws,
                                     num_samples=num_samples, obs_site=obs_site, chunk_size=chunk_size)
        return _log_mean_exp_with_se(draws.T)
    points = x.reshape(x.shape[0], -1)
    with torch.no_grad():
        means = _means(_replayed(model, guide, num_samples)[0], num_samples, obs_site, x)
        lls, ses = zip(*(_log_mean_exp_with_se(_log_terms(block, means, scale)) for block in points.split(chunk_size)))
    return torch.cat(lls), torch.cat(ses)


def _log_mean_exp_with_se(log_terms):
    """Row-wise ``log mean exp`` of ``[n, m]`` log terms and its delta-method standard error."""
    m = log_terms.shape[1]
    estimate = torch.logsumexp(log_terms, 1) - math.log(m)
    w = torch.exp(log_terms - log_terms.max(1, keepdim=True).values)
    return estimate, w.std(1) / (math.sqrt(m) * w.mean(1))
