"""The f-GAN family (Nowozin et al., 2016) as a two-player Pyro loss."""

from .. import divergences
from .gan import AdversarialLoss, _require_module

__all__ = ["FGANLoss"]

_OBJECTIVES = ("nonsaturating", "saturating")


class FGANLoss(AdversarialLoss):
    r"""Variational divergence minimization: the critic tightens the Fenchel lower bound of an
    f-divergence, the generator lowers it.

    With raw critic output :math:`V`, output activation :math:`g_f` and conjugate :math:`f^*`,

    .. math::

        F(\theta, \omega) = \mathbb{E}_{x \sim P}[g_f(V_\omega(x))]
            - \mathbb{E}_{x \sim Q_\theta}[f^*(g_f(V_\omega(x)))] \;\le\; D_f(P \| Q_\theta),

    and the losses (both minimized) are

    .. math::

        L_D = -F, \qquad
        L_G^{\text{saturating}} = -\mathbb{E}_{Q_\theta}[f^*(g_f(V))], \qquad
        L_G^{\text{nonsaturating}} = -\mathbb{E}_{Q_\theta}[g_f(V)].

    :math:`P` is the data (the model's observed site), :math:`Q_\theta` the model with the latent
    :math:`z` integrated out by sampling: maximizing :math:`p(x \mid \theta)` with :math:`z`
    marginalized is the ideal; :math:`D_f(P \| Q_\theta)` is its proxy (KL is exactly type-II
    maximum likelihood as the data grow).

    After each step :attr:`last` holds ``critic_loss``, ``generator_loss``, ``critic_real`` and
    ``critic_fake`` (mean activated critic output :math:`T = g_f(V)`), ``divergence`` (the
    variational estimate :math:`F`) and ``penalty``.

    .. note:: The critic is registered with Pyro as ``"critic"`` (``critic_name``) on every call,
        so :class:`~pyro.infer.SVI`'s optimizer steps it. For separate learning rates give
        :class:`pyro.optim.Adam` a callable of the parameter name:
        ``Adam(lambda name, p: {"lr": 4e-4 if name.startswith("critic") else 1e-4})``.

    :param divergence: a name from :func:`bayesgan.divergences.names` or a
        :class:`~bayesgan.divergences.Divergence`.
    :param torch.nn.Module critic: the critic network :math:`V_\omega`, mapping a batch of
        observations to one real number each.
    :param int critic_steps: critic updates per generator update.
    :param str generator_objective: ``"nonsaturating"``, ``"saturating"``, or ``None`` for the
        divergence's measured default.
    :param penalty: optional critic penalty ``penalty(critic, real, fake) -> Tensor`` (see
        :mod:`bayesgan.penalties`), added to the critic loss.
    :param generator_penalty: e.g. :class:`~bayesgan.penalties.GeneratorGradientPenalty`.
    :param str obs_site: the model's observation site.
    :param str critic_name: the name the critic is registered under in Pyro's param store.
    :param callable backward: how to back-propagate (default ``tensor.backward()``).
    :param int num_masks: stochastic passes averaged per step (MC dropout's ``n_mcd``).
    :param int num_data: the training set's size :math:`N`, for the :math:`\mathrm{KL}/N` term
        of a guide over random weights (see :class:`~bayesgan.infer.AdversarialLoss`).

    **References**

    1. S. Nowozin, B. Cseke, R. Tomioka, *f-GAN: Training Generative Neural Samplers using
       Variational Divergence Minimization*, NeurIPS 2016.

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> loc = torch.nn.Parameter(torch.zeros(1))
    >>> def model(x):
    ...     pyro.param("loc", loc)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    ...         pyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)
    >>> critic = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> svi = SVI(model, lambda x: None, Adam({"lr": 1e-3}), loss=FGANLoss("js", critic))
    >>> critic_loss, generator_loss = svi.step(torch.randn(8, 1) + 3.0)
    """

    def __init__(
        self,
        divergence,
        critic,
        *,
        critic_steps=1,
        generator_objective=None,
        penalty=None,
        generator_penalty=None,
        obs_site="x",
        critic_name="critic",
        backward=None,
        num_masks=1,
        num_data=None,
    ):
        _require_module(critic)
        super().__init__(
            critic,
            critic_steps=critic_steps,
            penalty=penalty,
            generator_penalty=generator_penalty,
            obs_site=obs_site,
            critic_name=critic_name,
            backward=backward,
            num_masks=num_masks,
            num_data=num_data,
        )
        self.divergence = divergences.get(divergence)
        if generator_objective is None:
            generator_objective = self.divergence.default_generator_objective
        if generator_objective not in _OBJECTIVES:
            raise ValueError(
                f"Expected generator_objective in {_OBJECTIVES}, actual {generator_objective!r}"
            )
        self.generator_objective = generator_objective

    def _critic_objective(self, v_real, v_fake):
        div = self.divergence
        t_real = div.activation(v_real).mean()
        estimate = t_real - div.f_star_activation(v_fake).mean()
        record = {"critic_real": t_real, "critic_fake": div.activation(v_fake).mean(), "divergence": estimate}
        return -estimate, record

    def _generator_objective(self, v_real, v_gen):
        if self.generator_objective == "saturating":
            return -self.divergence.f_star_activation(v_gen).mean()
        return -self.divergence.activation(v_gen).mean()

    def _overflow_hint(self):
        return self.divergence.overflow_hint

    def __repr__(self):
        return (
            f"FGANLoss({self.divergence!r}, critic_steps={self.critic_steps}, "
            f"generator_objective={self.generator_objective!r})"
        )
