r"""Embeddings and reconstructions through an encoder guide (:class:`~bayesgan.infer.BiGANLoss`).

The model and the guide are run as :class:`~pyro.infer.SVI` runs them, with the data batch as
their first argument: :func:`encode` traces the guide, :func:`reconstruct` replays the model
against that trace with the observation unconditioned, :math:`\hat x = G(E(x))`, and
:func:`latent_report` summarizes a data set in named floats.

>>> import torch, pyro, pyro.distributions as dist
>>> def model(x):
...     with pyro.plate("data", x.shape[0]):
...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
...         pyro.sample("x", dist.Delta(2 * z, event_dim=1), obs=x)
>>> def guide(x):
...     with pyro.plate("data", x.shape[0]):
...         pyro.sample("z", dist.Delta(x / 2, event_dim=1))
>>> x = torch.randn(4, 2)
>>> torch.allclose(reconstruct(model, guide, x), x)
True
>>> report = latent_report(model, guide, x)
>>> report[KEY_RECONSTRUCTION_MSE] < 1e-12 and report[KEY_CYCLE_MSE] < 1e-12
True
"""

import torch
import pyro.poutine as poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

from .infer.gan import _UnconditionSite

__all__ = [
    "KEY_COV_ERROR",
    "KEY_COV_RELATIVE_ERROR",
    "KEY_CYCLE_MSE",
    "KEY_MEAN_ERROR",
    "KEY_RECONSTRUCTION_MSE",
    "KEY_RECONSTRUCTION_RELATIVE_MSE",
    "encode",
    "latent_report",
    "reconstruct",
]

#: Mean squared error of :math:`G(E(x))` against :math:`x`, per coordinate.
KEY_RECONSTRUCTION_MSE = "reconstruction_mse"
#: The same divided by the data's mean per-coordinate variance (1: no better than the mean).
KEY_RECONSTRUCTION_RELATIVE_MSE = "reconstruction_relative_mse"
#: Mean squared error of :math:`E(G(z))` against :math:`z \sim p(z)`, per coordinate.
KEY_CYCLE_MSE = "latent_cycle_mse"
#: :math:`\|\bar z - \mathbb{E}_p[z]\|_2`, the encoded data's mean against the prior's.
KEY_MEAN_ERROR = "latent_mean_error"
#: :math:`\|\hat\Sigma_z - \Sigma_p\|_F`, the encoded data's covariance against the prior's.
KEY_COV_ERROR = "latent_cov_error"
#: :math:`\|\hat\Sigma_z - \Sigma_p\|_F / \|\Sigma_p\|_F`.
KEY_COV_RELATIVE_ERROR = "latent_cov_relative_error"


def _sites(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)]


def _guide_trace(guide, x, latent_site, mean):
    trace = poutine.trace(guide).get_trace(x)
    if latent_site not in trace.nodes:
        raise ValueError(f"Expected the guide to sample {latent_site!r}, actual sample sites {_sites(trace)}")
    if mean:
        site = trace.nodes[latent_site]
        trace.nodes[latent_site] = dict(site, value=site["fn"].mean.expand(site["value"].shape))
    return trace


def _model_trace(model, replayed, x, obs_site):
    with poutine.trace() as tr, _UnconditionSite(obs_site), poutine.replay(trace=replayed):
        model(x)
    if obs_site not in tr.trace.nodes:
        raise ValueError(f"Expected the model to have the site {obs_site!r}, actual sample sites {_sites(tr.trace)}")
    return tr.trace


def encode(guide, x, *, latent_site="z", mean=False):
    r"""The guide's latent for each row of ``x``: :math:`z \sim q(z \mid x)`, or its mean.

    :param callable guide: the encoder guide, called as ``guide(x)``.
    :param torch.Tensor x: a data batch.
    :param str latent_site: the guide's latent site.
    :param bool mean: return :math:`\mathbb{E}_q[z \mid x]` instead of a draw (the same for a
        ``Delta`` guide).
    :rtype: torch.Tensor
    """
    with torch.no_grad():
        return _guide_trace(guide, x, latent_site, mean).nodes[latent_site]["value"]


def reconstruct(model, guide, x, *, latent_site="z", obs_site="x", mean=False):
    r"""Reconstructions :math:`\hat x = G(E(x))`: the model replayed against the guide's trace,
    its observation site unconditioned.

    :param callable model: the generator model, called as ``model(x)``.
    :param callable guide: the encoder guide, called as ``guide(x)``.
    :param torch.Tensor x: a data batch.
    :param str latent_site: the latent site.
    :param str obs_site: the model's observation site.
    :param bool mean: decode the guide's mean rather than a draw.
    :rtype: torch.Tensor
    """
    with torch.no_grad():
        trace = _model_trace(model, _guide_trace(guide, x, latent_site, mean), x, obs_site)
        return trace.nodes[obs_site]["value"]


def _generate(model, guide, x, latent_site, obs_site):
    """``(G(z), z)`` with ``z`` from the prior; other guide sites (random weights) replayed."""
    guide_trace = _guide_trace(guide, x, latent_site, False)
    others = Trace()
    for name, site in guide_trace.nodes.items():
        if name != latent_site:
            others.add_node(name, **site)
    trace = _model_trace(model, others, x, obs_site)
    if latent_site not in trace.nodes:
        raise ValueError(f"Expected the model to sample {latent_site!r}, actual sample sites {_sites(trace)}")
    return trace.nodes[obs_site]["value"], trace.nodes[latent_site]


def _prior_moments(site):
    value = site["value"]
    n = value.shape[0]
    fn = site["fn"]
    mean = fn.mean.expand(value.shape).reshape(n, -1)
    try:
        cov = fn.covariance_matrix.expand(n, mean.shape[1], mean.shape[1])
    except (AttributeError, NotImplementedError, RuntimeError):
        cov = torch.diag_embed(fn.variance.expand(value.shape).reshape(n, -1))
    return mean.mean(0), cov.mean(0)


def latent_report(model, guide, data, *, latent_site="z", obs_site="x", batch_size=None, mean=False):
    r"""How well the encoder inverts the generator on a data set, and how its codes compare with
    the prior: named floats (keys ``KEY_*`` of this module).

    The encoded data's mean :math:`\bar z` and covariance :math:`\hat\Sigma_z` (over all rows)
    are compared with the prior's, read from the model's latent site (``covariance_matrix`` or
    ``variance``). The cycle error draws one :math:`z \sim p(z)` per data row.

    :param callable model: the generator model, called as ``model(x)``.
    :param callable guide: the encoder guide, called as ``guide(x)``.
    :param torch.Tensor data: the data set (at least 2 rows).
    :param str latent_site: the latent site.
    :param str obs_site: the model's observation site.
    :param int batch_size: rows per call of model and guide (default: all at once).
    :param bool mean: use the guide's mean rather than a draw.
    :rtype: dict
    """
    if data.shape[0] < 2:
        raise ValueError(f"Expected a data set of at least 2 rows, actual {data.shape[0]}")
    size = batch_size or data.shape[0]
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"Expected batch_size to be an int >= 1 or None, actual {batch_size!r}")
    codes, squared, cycle, moments = [], 0.0, 0.0, []
    with torch.no_grad():
        for x in data.split(size):
            z = encode(guide, x, latent_site=latent_site, mean=mean)
            x_hat = reconstruct(model, guide, x, latent_site=latent_site, obs_site=obs_site, mean=mean)
            squared += (x_hat - x).pow(2).sum()
            fake, prior = _generate(model, guide, x, latent_site, obs_site)
            cycle += (encode(guide, fake, latent_site=latent_site, mean=mean) - prior["value"]).pow(2).sum()
            codes.append(z.reshape(z.shape[0], -1))
            moments.append(_prior_moments(prior))
        codes = torch.cat(codes)
        prior_mean = sum(m for m, _ in moments) / len(moments)
        prior_cov = sum(c for _, c in moments) / len(moments)
        cov_error = torch.linalg.matrix_norm(torch.cov(codes.T).reshape(prior_cov.shape) - prior_cov)
        variance = data.reshape(data.shape[0], -1).var(0).mean()
    return {
        KEY_RECONSTRUCTION_MSE: float(squared / data.numel()),
        KEY_RECONSTRUCTION_RELATIVE_MSE: float(squared / data.numel() / variance),
        KEY_CYCLE_MSE: float(cycle / codes.numel()),
        KEY_MEAN_ERROR: float(torch.linalg.vector_norm(codes.mean(0) - prior_mean)),
        KEY_COV_ERROR: float(cov_error),
        KEY_COV_RELATIVE_ERROR: float(cov_error / torch.linalg.matrix_norm(prior_cov)),
    }
