r"""Ready-made generator models: a latent plate, a network, an observation site.

Writing the model by hand is always possible and gives the same result; :class:`GeneratorModel`
is the common case in one line.
"""

import fnmatch

import torch
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pyro.util
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_

from .distributed import _registered, unwrap

__all__ = ["GeneratorModel", "WeightGuide", "make_stochastic", "prior_guide"]


def prior_guide(*args, **kwargs):
    """The empty guide of a partially stochastic generator: :math:`z` comes from its prior."""


class GeneratorModel:
    r"""A generator network as a Pyro model with :math:`z` integrated out by sampling.

    .. math::

        z_i \sim \mathcal{N}(0, I_P), \qquad
        x_i \mid z_i \sim \delta(x_i - G_\psi(z_i)) \;\text{ or }\;
        \mathcal{N}(G_\psi(z_i), \sigma^2 I) \text{ (the relaxed likelihood)}.

    Call it with a data batch ``x`` (training) or with ``num_samples`` (sampling); it returns
    the observation site's value.

    :param torch.nn.Module generator: maps ``[n, latent_dim]`` to ``[n, *event_shape]``; on
        several processes, wrapped by :func:`bayesgan.distributed.wrap` (Pyro registers its inner
        module, training calls the wrapper, sampling the inner module).
    :param int latent_dim: the latent dimension :math:`P`.
    :param float scale: :math:`\sigma` of the relaxed likelihood; ``None`` for the point mass.
    :param str name: the generator's name in Pyro's param store.
    :param str obs_site: the observation site's name.

    >>> import torch
    >>> G = torch.nn.Linear(2, 3)
    >>> model = GeneratorModel(G, latent_dim=2)
    >>> model(num_samples=5).shape
    torch.Size([5, 3])
    """

    def __init__(self, generator, latent_dim, *, scale=None, name="generator", obs_site="x"):
        if not isinstance(generator, torch.nn.Module):
            raise ValueError(f"Expected a torch.nn.Module generator, actual {type(generator).__name__}")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"Expected latent_dim to be an int >= 1, actual {latent_dim!r}")
        if scale is not None and not scale > 0:
            raise ValueError(f"Expected scale > 0 or None, actual {scale!r}")
        self.generator = generator
        self.latent_dim = latent_dim
        self.scale = scale
        self.name = name
        self.obs_site = obs_site

    def __call__(self, x=None, num_samples=None):
        if (x is None) == (num_samples is None):
            raise ValueError("Expected exactly one of x (a data batch) or num_samples")
        inner = unwrap(self.generator)
        # Training calls a DDP/Fabric wrapper (its gradients are averaged); sampling (num_samples)
        # calls the inner module on one rank without any collective.
        network = self.generator if x is not None else inner
        if not isinstance(inner, PyroModule):  # a PyroModule registers its own params
            pyro.module(self.name, _registered(self.generator, "generator") if x is not None else inner)
        n = x.shape[0] if x is not None else num_samples
        param = next(inner.parameters(), None)  # dtype and device of the latents
        loc = torch.zeros((), dtype=param.dtype if param is not None else None,
                          device=param.device if param is not None else None)
        plate = pyro.plate("data", n)
        with plate:
            z = pyro.sample("z", dist.Normal(loc, 1.0).expand([self.latent_dim]).to_event(1))
        out = network(z)  # outside the plate: random weights are drawn once per batch
        event_dim = out.dim() - 1
        if self.scale is None:
            fn = dist.Delta(out, event_dim=event_dim)
        else:
            fn = dist.Normal(out, self.scale).to_event(event_dim)
        with plate:
            return pyro.sample(self.obs_site, fn, obs=x)

    def __repr__(self):
        return f"GeneratorModel({self.generator!r}, latent_dim={self.latent_dim}, scale={self.scale})"


def make_stochastic(module, include, *, prior_scale=1.0, centered=False, name="generator"):
    r"""Make chosen weights of a network random, in place: partial stochasticity without
    rewriting the network.

    The module becomes a :class:`~pyro.nn.PyroModule` (:func:`~pyro.nn.module.to_pyro_module_`)
    whose parameters matching ``include`` are replaced by :class:`~pyro.nn.PyroSample` priors

    .. math:: w \sim \mathcal{N}(m, s^2 I), \qquad m = 0 \text{ or } m = w_0 \text{ (centered)},

    and whose other parameters stay deterministic (Pyro params named ``f"{name}.{path}"``).
    Every forward pass inside a Pyro model then samples the random weights at sites named
    ``f"{name}.{path}"``; under a guide's trace (e.g. :class:`WeightGuide`) it uses the guide's
    draw. Use the module in a model without :func:`pyro.module` (a ``PyroModule`` registers its
    own parameters), and call it *outside* the data plate, or the plate would draw one set of
    weights per data point; :class:`GeneratorModel` does both.

    :param torch.nn.Module module: the network; converted in place, before its first use.
    :param include: a parameter path pattern or a list of them, as
        :func:`fnmatch.fnmatch` patterns over ``module.named_parameters()`` names
        (``"2.weight"``, ``"2.*"`` for a whole layer, ``"*.bias"`` for every bias).
    :param float prior_scale: the prior's standard deviation :math:`s`.
    :param bool centered: center the prior on the current values :math:`w_0` instead of 0.
    :param str name: the prefix of the sample and param sites.
    :returns: the random sites' names mapped to the weights' values before the change (an
        initial point for a guide: ``WeightGuide(model, init_values=...)``).
    :rtype: dict

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> sorted(make_stochastic(net, "2.*", prior_scale=0.5))
    ['generator.2.bias', 'generator.2.weight']
    >>> bool((net(torch.zeros(1, 2)) != net(torch.zeros(1, 2))).all())  # a new last layer each call
    True
    """
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"Expected a torch.nn.Module, actual {type(module).__name__}")
    patterns = [include] if isinstance(include, str) else list(include)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"Expected include to be a pattern or a list of patterns, actual {include!r}")
    if not prior_scale > 0:
        raise ValueError(f"Expected prior_scale > 0, actual {prior_scale!r}")
    params = dict(module.named_parameters())
    chosen = [path for path in params if any(fnmatch.fnmatchcase(path, p) for p in patterns)]
    if not chosen:
        raise ValueError(
            f"Expected include={patterns} to match some of the module's parameters, actual none "
            f"matched; its parameters are {list(params)}"
        )
    if isinstance(module, PyroModule) and module._pyro_context.used:
        raise ValueError("Expected a module that has not run as a PyroModule yet; convert it before use")
    to_pyro_module_(module)
    module._pyro_set_supermodule(name, module._pyro_context)
    initial = {}
    for path in chosen:
        owner_path, _, attr = path.rpartition(".")
        owner = module.get_submodule(owner_path)
        value = params[path].detach().clone()
        loc = value if centered else torch.zeros_like(value)
        prior = dist.Normal(loc, torch.full_like(value, prior_scale)).to_event(value.dim())
        delattr(owner, attr)
        setattr(owner, attr, PyroSample(prior))
        initial[f"{name}.{path}"] = value
    return initial


def _is_global(msg):
    return (
        msg["type"] == "sample"
        and not msg["is_observed"]
        and not msg["cond_indep_stack"]
        and type(msg["fn"]).__name__ != "_Subsample"
    )


class WeightGuide:
    r"""A mean-field Gaussian guide over a model's random weights only, never over the latents:

    .. math:: q(w) = \prod_k \mathcal{N}(w_k \mid \mu_k, \sigma_k^2).

    Its sites are the model's sample sites outside every plate (the weights made random by
    :func:`make_stochastic`, or ``PyroSample`` attributes), found on the first call; :math:`z`
    keeps coming from its prior in the model, as the GAN losses require. The means and scales are
    Pyro params ``f"{prefix}.{site}.loc"`` and ``.scale``. Because every site is a plain
    ``Normal``, the losses compute :math:`\mathrm{KL}(q \| p)` analytically against Normal priors.

    :param model: the generator model.
    :param dict init_values: initial means by site name (what :func:`make_stochastic` returns);
        other sites start at a draw from their prior.
    :param float init_scale: the initial standard deviation :math:`\sigma`.
    :param str prefix: the params' name prefix.

    >>> import torch
    >>> net = torch.nn.Linear(2, 2)
    >>> model = GeneratorModel(net, latent_dim=2, scale=0.1)
    >>> guide = WeightGuide(model, init_values=make_stochastic(net, "bias"))
    >>> sorted(pyro.poutine.trace(guide).get_trace(torch.zeros(4, 2)).stochastic_nodes)
    ['generator.bias']
    """

    def __init__(self, model, *, init_values=None, init_scale=0.01, prefix="weights"):
        if not init_scale > 0:
            raise ValueError(f"Expected init_scale > 0, actual {init_scale!r}")
        self.model = model
        self.init_values = dict(init_values or {})
        self.init_scale = init_scale
        self.prefix = prefix
        self.sites = None

    def _find_sites(self, args, kwargs):
        rng = pyro.util.get_rng_state()  # a guide's first call draws the same as any later one
        try:
            with torch.no_grad(), poutine.block(), poutine.trace() as tr:
                poutine.block(self.model, expose_fn=_is_global)(*args, **kwargs)
        finally:
            pyro.util.set_rng_state(rng)
        sites = {}
        for name, site in tr.trace.nodes.items():
            if site["type"] != "sample" or not _is_global(site):
                continue
            if site["fn"].support is not dist.constraints.real and not (
                isinstance(site["fn"].support, dist.constraints.independent)
                and site["fn"].support.base_constraint is dist.constraints.real
            ):
                raise ValueError(
                    f"Expected real-valued random weights, actual support {site['fn'].support} at "
                    f"{name!r}; use a Normal-type prior, or a Pyro autoguide for other supports"
                )
            init = self.init_values.get(name, site["value"])
            sites[name] = (init.detach().clone(), site["fn"].event_dim)
        unknown = set(self.init_values) - set(sites)
        if unknown:
            raise ValueError(f"Expected init_values for the model's random weights {sorted(sites)}, actual extra {sorted(unknown)}")
        if not sites:
            raise ValueError("Expected the model to have random weights (sample sites outside every plate), actual none")
        return sites

    def __call__(self, *args, **kwargs):
        if self.sites is None:
            self.sites = self._find_sites(args, kwargs)
        values = {}
        for name, (init, event_dim) in self.sites.items():
            loc = pyro.param(f"{self.prefix}.{name}.loc", lambda: init.clone())
            scale = pyro.param(
                f"{self.prefix}.{name}.scale",
                lambda: torch.full_like(init, self.init_scale),
                constraint=dist.constraints.positive,
            )
            values[name] = pyro.sample(name, dist.Normal(loc, scale).to_event(event_dim))
        return values

    def __repr__(self):
        return f"WeightGuide(sites={None if self.sites is None else list(self.sites)})"
