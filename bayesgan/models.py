r"""Ready-made generator models: a latent plate, a network, an observation site.

Writing the model by hand is always possible and gives the same result; :class:`GeneratorModel`
is the common case in one line.
"""

import torch
import pyro
import pyro.distributions as dist

__all__ = ["GeneratorModel", "prior_guide"]


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

    :param torch.nn.Module generator: maps ``[n, latent_dim]`` to ``[n, *event_shape]``.
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
        pyro.module(self.name, self.generator)
        n = x.shape[0] if x is not None else num_samples
        param = next(self.generator.parameters(), None)
        loc = torch.zeros((), dtype=param.dtype if param is not None else None,
                          device=param.device if param is not None else None)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(loc, 1.0).expand([self.latent_dim]).to_event(1))
            out = self.generator(z)
            event_dim = out.dim() - 1
            if self.scale is None:
                fn = dist.Delta(out, event_dim=event_dim)
            else:
                fn = dist.Normal(out, self.scale).to_event(event_dim)
            return pyro.sample(self.obs_site, fn, obs=x)

    def __repr__(self):
        return f"GeneratorModel({self.generator!r}, latent_dim={self.latent_dim}, scale={self.scale})"
