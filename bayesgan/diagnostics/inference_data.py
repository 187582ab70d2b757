r"""ArviZ objects of a trained generator, for PSIS-LOO, WAIC and model comparison.

One adapter serves both ArviZ generations: the groups are built as :class:`xarray.Dataset`
objects and wrapped as an ``InferenceData`` (ArviZ 0.x) or an :class:`xarray.DataTree`
(ArviZ 1.x). The groups:

* ``posterior``: per draw :math:`d`, the guide's random weights :math:`w_d` (if any) and the
  predictive mean :math:`\bar x_d = \frac1S \sum_j G_{w_d}(z_{dj})`;
* ``log_likelihood``: :math:`\ell_{di} = \log \hat p(x_i \mid w_d)`, the relaxed
  log-likelihood of each held-out point (:func:`~bayesgan.diagnostics.log_likelihood_draws`);
* ``posterior_predictive``: per draw, as many generated samples as there are held-out points,
  with the observed data's dimensions (so ``arviz.plot_ppc`` works);
* ``observed_data``: the held-out points;
* ``sample_stats``: the training traces (one entry per step: losses, critic estimates,
  penalties, KL, anything recorded), along a ``step`` dimension;

and the metric protocol (:math:`\sigma`, :math:`S`, the estimator) in every group's attributes.
"""

import json

import numpy as np
import pyro.poutine as poutine
import torch

from .likelihood import _check, _log_terms, _means, _replayed

__all__ = ["to_inference_data"]


def _arviz_major():
    import arviz

    return int(arviz.__version__.split(".")[0])


def _draw(model, guide, x, scale, num_samples, num_predictive, obs_site):
    """One posterior draw: ``(weights, predictive_mean, log_likelihood_row, predictive)``."""
    model, guide_trace = _replayed(model, guide, num_samples)
    weights = {}
    if guide_trace is not None:
        weights = {
            name: site["value"]
            for name, site in guide_trace.nodes.items()
            if site["type"] == "sample" and not site["infer"].get("is_auxiliary") and not site["cond_indep_stack"]
        }
    means = _means(model, num_samples, obs_site, x)
    row = torch.logsumexp(_log_terms(x.reshape(x.shape[0], -1), means, scale), 1) - np.log(num_samples)
    predictive = None
    if num_predictive:
        predictive = poutine.trace(model).get_trace(num_samples=num_predictive).nodes[obs_site]["value"]
    return weights, means.mean(0).reshape(x.shape[1:]), row, predictive


def _dims(name, shape):
    return [f"{name}_dim_{k}" for k in range(len(shape))]


def _history_dataset(history, xr):
    if history is None:
        return None
    if isinstance(history, dict):
        columns = {k: list(v) for k, v in history.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"Expected history columns of one length, actual lengths {sorted(lengths)}")
    else:
        rows = list(history)
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("Expected history as a list of dicts (loss.last per step) or a dict of lists")
        keys = list(dict.fromkeys(k for r in rows for k in r))
        columns = {k: [r.get(k, np.nan) for r in rows] for k in keys}
    steps = columns.pop("step", None)
    n = len(next(iter(columns.values()), []))
    coords = {"step": np.asarray(steps if steps is not None else np.arange(n))}
    data = {k: ("step", np.asarray(v, dtype=np.int8 if k == "generator_updated" else np.float64)) for k, v in columns.items()}
    return xr.Dataset(data, coords=coords)


def _attrs(protocol):
    out = {}
    for key, value in protocol.items():
        if isinstance(value, bool):
            value = int(value)
        elif value is None:
            value = "none"
        elif not isinstance(value, (int, float, str)):
            value = json.dumps(value, default=str)
        out[key] = value
    return out


def to_inference_data(
    model,
    x,
    *,
    scale,
    guide=None,
    num_draws=100,
    num_chains=1,
    num_samples=1000,
    num_predictive=None,
    history=None,
    protocol=None,
    obs_site="x",
):
    r"""An ArviZ object for a trained generator and held-out data ``x``.

    Each of the ``num_chains * num_draws`` draws takes the random weights from ``guide`` (or
    the fixed weights), ``num_samples`` fresh latents (and dropout masks, under
    :func:`~bayesgan.handlers.mc_dropout`), and gives the pointwise relaxed log-likelihood

    .. math:: \ell_{di} = \log \frac1S \sum_{j=1}^S \mathcal{N}(x_i \mid G_{w_d}(z_{dj}), \sigma^2 I),

    so that ``arviz.loo`` estimates :math:`\sum_i \log p(x_i \mid x_{-i})` and ``arviz.compare``
    ranks models on the same held-out data. Without random weights the draws differ by Monte
    Carlo noise only: :math:`p_\mathrm{loo} \approx 0` and the LOO estimate is the held-out
    log-likelihood itself. Keep :math:`S` large enough that the noise is small against the
    differences compared (:func:`~bayesgan.diagnostics.relaxed_log_likelihood` reports it).

    :param model: called as ``model(num_samples=S)``; ``obs_site`` is ``Delta(G(z))`` or
        ``Normal(G(z), ...)``.
    :param torch.Tensor x: held-out data, ``[n, *event_shape]``.
    :param float scale: the relaxed likelihood's :math:`\sigma`.
    :param guide: a guide over the random weights (:class:`~bayesgan.models.WeightGuide`), or
        ``None``.
    :param int num_draws: draws per chain.
    :param int num_chains: independent chains (posterior draws are independent here; chains
        let ArviZ's diagnostics check it).
    :param int num_samples: :math:`S`, latent draws per posterior draw.
    :param int num_predictive: generated samples per draw in ``posterior_predictive``; default
        ``n`` (the observed data's shape); 0 leaves the group out.
    :param history: the training traces: a list of ``loss.last`` dicts, or a dict of lists.
    :param dict protocol: extra attributes recorded with the metric protocol.
    :param str obs_site: the observation site.
    :returns: ``arviz.InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x).

    >>> import torch, arviz
    >>> from bayesgan.models import GeneratorModel
    >>> model = GeneratorModel(torch.nn.Linear(1, 2), latent_dim=1)
    >>> idata = to_inference_data(model, torch.randn(20, 2), scale=0.5, num_draws=10, num_samples=200)
    >>> idata.log_likelihood["x"].shape
    (1, 10, 20)
    """
    num_predictive = _check_arguments(x.shape[0], bool(torch.isfinite(x).all()), scale, num_samples,
                                      num_draws, num_chains, num_predictive)
    with torch.no_grad():
        results = [_draw(model, guide, x, scale, num_samples, num_predictive, obs_site)
                   for _ in range(num_chains * num_draws)]
    return _assemble(results, x, obs_site=obs_site, num_chains=num_chains, num_draws=num_draws,
                     scale=scale, num_samples=num_samples, history=history, protocol=protocol)


def _check_arguments(n, finite, scale, num_samples, num_draws, num_chains, num_predictive):
    """Check the arguments shared by both sides; return ``num_predictive`` (default ``n``)."""
    _check(scale, num_samples, num_draws)
    if not (isinstance(num_chains, int) and num_chains >= 1):
        raise ValueError(f"Expected num_chains to be an int >= 1, actual {num_chains!r}")
    if num_predictive is None:
        num_predictive = n
    if not (isinstance(num_predictive, int) and num_predictive >= 0):
        raise ValueError(f"Expected num_predictive to be an int >= 0, actual {num_predictive!r}")
    if not finite:
        raise ValueError("Expected finite held-out data, actual NaN or inf; drop or impute those rows")
    return num_predictive


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _assemble(results, x, *, obs_site, num_chains, num_draws, scale, num_samples, history, protocol, **extra):
    """The groups from per-draw ``(weights, predictive_mean, log_likelihood_row, predictive)``
    (torch or JAX arrays), wrapped for the installed ArviZ; ``extra`` goes into the attributes."""
    import xarray as xr

    weights, means, rows, predictive = zip(*results)

    def stack(values):
        array = np.stack([_numpy(v) for v in values])
        return array.reshape(num_chains, num_draws, *array.shape[1:])

    x = _numpy(x)
    coords = {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}
    sample = ["chain", "draw"]
    obs_dims = _dims(obs_site, x.shape)
    posterior = {name: stack([w[name] for w in weights]) for name in weights[0]}
    posterior["predictive_mean"] = stack(means)
    groups = {
        "posterior": xr.Dataset({k: (sample + _dims(k, v.shape[2:]), v) for k, v in posterior.items()}, coords=coords),
        "log_likelihood": xr.Dataset({obs_site: (sample + obs_dims[:1], stack(rows))}, coords=coords),
        "observed_data": xr.Dataset({obs_site: (obs_dims, x)}),
    }
    if predictive[0] is not None:
        values = stack(predictive)
        dims = sample + ([obs_dims[0]] if values.shape[2] == x.shape[0] else ["sample"]) + obs_dims[1:]
        groups["posterior_predictive"] = xr.Dataset({obs_site: (dims, values)}, coords=coords)
    stats = _history_dataset(history, xr)
    if stats is not None:
        groups["sample_stats"] = stats
    attrs = _attrs({
        "estimator": "relaxed log-likelihood: log-mean-exp of N(x | G(z), scale^2 I) over num_samples latents",
        "scale": float(scale),
        "num_samples": num_samples,
        "num_heldout": int(x.shape[0]),
        "random_weights": sorted(weights[0]),
        "library": "bayesgan",
        **extra,
        **(protocol or {}),
    })
    for dataset in groups.values():
        dataset.attrs.update(attrs)
    return _wrap(groups)


def _wrap(groups, flavor=None):
    """``InferenceData`` for ArviZ 0.x, ``DataTree`` for 1.x (or ``flavor`` given)."""
    if flavor is None:
        flavor = "datatree" if _arviz_major() >= 1 else "inference_data"
    if flavor == "datatree":
        import xarray as xr

        return xr.DataTree.from_dict({f"/{name}": dataset for name, dataset in groups.items()})
    import arviz

    return arviz.InferenceData(**groups)
