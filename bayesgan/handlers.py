r"""Effect handlers that change the model: likelihood relaxation and instance noise.

:func:`relax` replaces the point-mass observation :math:`\delta(x - G(z))` by the relaxed
likelihood :math:`\mathcal{N}(x \mid G(z), \sigma^2 I)` (the paper's relaxation: noise on the
generated samples only, ``where="fake"``), or also adds :math:`\sigma\epsilon` to the observed
data (instance noise, Sønderby et al. 2016, ``where="both"``). Only the observation site
changes. The scale may follow a schedule of the training step: :func:`constant`, :func:`linear`,
:func:`exponential`.

>>> import torch, pyro, pyro.distributions as dist
>>> def model(x):
...     with pyro.plate("data", x.shape[0]):
...         pyro.sample("x", dist.Delta(torch.zeros(x.shape), event_dim=1), obs=x)
>>> relaxed = relax(model, scale=0.1)
>>> tr = pyro.poutine.trace(relaxed).get_trace(torch.zeros(3, 2))
>>> type(tr.nodes["x"]["fn"]).__name__
'Independent'
"""

import contextlib
import math

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger

__all__ = ["RelaxMessenger", "constant", "exponential", "linear", "mc_dropout", "relax"]


def constant(value):
    """A schedule that is ``value`` at every step."""
    return lambda step: value


def linear(start, end, steps):
    r"""A schedule going linearly from ``start`` at step 0 to ``end`` at step ``steps``, then
    staying at ``end``: :math:`\sigma_t = \sigma_0 + (\sigma_1 - \sigma_0)\min(t / T, 1)`."""
    if not steps > 0:
        raise ValueError(f"Expected steps > 0, actual {steps!r}")
    return lambda step: start + (end - start) * min(step / steps, 1.0)


def exponential(start, half_life):
    r"""A schedule halving every ``half_life`` steps: :math:`\sigma_t = \sigma_0 2^{-t / h}`."""
    if not half_life > 0:
        raise ValueError(f"Expected half_life > 0, actual {half_life!r}")
    return lambda step: start * math.pow(2.0, -step / half_life)


class RelaxMessenger(Messenger):
    """The messenger behind :func:`relax`; ``step`` counts the observed calls it has seen."""

    def __init__(self, scale, *, where="fake", site="x", noise=None):
        super().__init__()
        if where not in ("fake", "both"):
            raise ValueError(f"Expected where 'fake' (relaxation) or 'both' (instance noise), actual {where!r}")
        if not callable(scale) and not scale > 0:
            raise ValueError(f"Expected scale > 0 or a schedule (a callable of the step), actual {scale!r}")
        self.scale, self.where, self.site = scale, where, site
        self.noise = noise if noise is not None else _standard_normal
        self.step = 0

    def current_scale(self):
        """The scale at the current step."""
        return float(self.scale(self.step)) if callable(self.scale) else float(self.scale)

    def _pyro_sample(self, msg):
        if msg["name"] != self.site:
            return
        fn = msg["fn"]
        if not isinstance(fn, dist.Delta):
            raise ValueError(
                f"Expected a Delta (point-mass) observation at {self.site!r} to relax, actual "
                f"{type(fn).__name__}; a model that already has a likelihood needs no relax()"
            )
        scale = self.current_scale()
        if msg["is_observed"]:
            self.step += 1
        if scale == 0:
            return
        msg["fn"] = dist.Normal(fn.v, scale).to_event(fn.event_dim)
        if msg["is_observed"] and self.where == "both":
            obs = msg["value"]
            msg["value"] = obs + scale * self.noise(obs.shape, obs.dtype, obs.device)


def _standard_normal(shape, dtype, device):
    return torch.randn(shape, dtype=dtype, device=device)


def relax(fn=None, *, scale, where="fake", site="x", noise=None):
    r"""Relax the point-mass observation of a model to :math:`\mathcal{N}(G(z), \sigma^2 I)`.

    With ``where="fake"`` (the paper's likelihood relaxation) only the generated samples carry
    the noise: the unconditioned site draws :math:`G(z) + \sigma\epsilon`, and writing
    ``Normal(G(z), sigma).to_event(...)`` in the model by hand is the same. With
    ``where="both"`` (instance noise) the observed data get :math:`\sigma\epsilon'` too.

    :param callable fn: the model; ``None`` returns the messenger, for use as a context manager.
    :param scale: :math:`\sigma > 0`, or a schedule: a callable of the step (the number of
        observed calls of the model so far, one per ``svi.step``; set ``.step`` to resume).
    :param str where: ``"fake"`` or ``"both"``.
    :param str site: the observation site.
    :param callable noise: ``noise(shape, dtype, device)`` returning standard-normal draws for the
        data in ``where="both"`` (default :func:`torch.randn`); fixed draws give common random
        numbers.
    :returns: the wrapped model, whose messenger is its ``.messenger`` attribute.
    """
    messenger = RelaxMessenger(scale, where=where, site=site, noise=noise)
    if fn is None:
        return messenger
    wrapped = messenger(fn)
    wrapped.messenger = messenger
    return wrapped


_DROPOUT = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)
_CHANNEL_DROPOUT = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)


def _shared_mask_forward(module):
    """A dropout forward that draws one mask per call, shared by the whole batch (dim 0)."""

    def forward(x):
        keep = 1.0 - module.p
        if isinstance(module, _CHANNEL_DROPOUT):
            shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        else:
            shape = (1,) + tuple(x.shape[1:])
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep if keep > 0 else x * 0.0

    return forward


@contextlib.contextmanager
def mc_dropout(*modules, shared=False):
    """Monte Carlo dropout (Gal & Ghahramani, 2016) for sampling: inside the block every given
    module is in eval mode (BatchNorm uses its running statistics) except its dropout layers,
    which stay stochastic, so every forward pass draws a fresh mask: approximate posterior draws
    of the weights on top of the random latents. The previous modes are restored afterwards.

    By default each sample of a batch gets its own mask, so a batch of generated samples mixes
    over weights and latents alike (the marginal). With ``shared=True`` one mask serves the whole
    batch of a forward pass: each call is then one draw of the weights, as
    :func:`~bayesgan.diagnostics.to_inference_data` needs for per-draw likelihoods and as the
    spread of the posterior predictive shows.

    :param modules: the networks (generator, critic) to switch.
    :param bool shared: one mask per forward pass instead of one per sample.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Dropout(0.5), torch.nn.Linear(64, 1))
    >>> z = torch.ones(2, 4)
    >>> with mc_dropout(net):
    ...     bool(net(z)[0] != net(z)[0])
    True
    >>> with mc_dropout(net, shared=True):  # one mask for both rows
    ...     out = net(z)
    >>> bool(out[0] == out[1])
    True
    """
    if not modules or not all(isinstance(m, torch.nn.Module) for m in modules):
        raise ValueError(f"Expected one or more torch.nn.Module, actual {[type(m).__name__ for m in modules]}")
    dropouts = [m for module in modules for m in module.modules() if isinstance(m, _DROPOUT)]
    if shared and any(isinstance(m, torch.nn.AlphaDropout) for m in dropouts):
        raise ValueError("Expected Dropout, Dropout1d/2d/3d with shared=True, actual AlphaDropout")
    saved = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        for m in dropouts:
            m.train()
            if shared:
                m.forward = _shared_mask_forward(m)
        yield
    finally:
        for m, training in saved:
            m.training = training
        for m in dropouts:
            m.__dict__.pop("forward", None)
