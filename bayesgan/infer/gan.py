"""The base of every two-player objective: samples from traces, one backward, step records."""

import torch
import pyro
import pyro.poutine as poutine
from pyro.distributions.kl import kl_divergence
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import site_is_subsample

from ..distributed import _registered, is_wrapped, unwrap

__all__ = ["AdversarialLoss", "TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """Raised when a loss turns NaN or infinite; the parameters are left as they were."""


class _UnconditionSite(UnconditionMessenger):
    """:func:`~pyro.poutine.uncondition` for one site only: other observed or conditioned sites
    (labels, a latent fixed with :func:`~pyro.poutine.condition`) keep their values."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def _pyro_sample(self, msg):
        if msg["name"] == self.name:
            super()._pyro_sample(msg)


def _trace_params(trace):
    """The unconstrained parameters a trace touched, in order (as SVI collects them)."""
    return [site["value"].unconstrained() for site in trace.nodes.values() if site["type"] == "param"]


def _grad_norm(params, like):
    """The Euclidean norm of the gradients of ``params`` (0 where there are none)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return like.new_zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _check_single_sample(critic):
    norms = [type(m).__name__ for m in critic.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        raise ValueError(
            f"Expected a batch of at least 2 for a critic with {norms[0]} in training mode, actual "
            f"batch size 1: batch statistics of one sample are undefined; use a larger batch, or "
            f"GroupNorm/LayerNorm (or no normalization) in the critic"
        )


def _require_module(critic):
    if not isinstance(critic, torch.nn.Module):
        raise ValueError(f"Expected the critic to be a torch.nn.Module, actual {type(critic).__name__}")


def _call_frozen(module, *inputs, higher_order=False):
    """``module(*inputs)`` with the module's parameters treated as constants.

    Gradients flow to the inputs only. Switching ``requires_grad`` off around the call is
    several times cheaper than :func:`torch.func.functional_call` with detached copies, and the
    graph it builds is the same for one backward. Not for two: autograd saves a leaf parameter
    itself, so a graph built with ``create_graph=True`` from it (a generator penalty) reaches
    the parameter once ``requires_grad`` is back on. ``higher_order=True`` uses detached copies.
    A DDP or Fabric wrapper is bypassed: its inner module runs with detached copies (this term
    takes no part in the gradients' synchronization, and DDP's parameters are not toggled).
    """
    if is_wrapped(module):
        module, higher_order = unwrap(module), True
    if higher_order:
        detached = {name: p.detach() for name, p in module.named_parameters()}
        return torch.func.functional_call(module, detached, inputs)
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        return module(*inputs)
    finally:
        for p in params:
            p.requires_grad_(True)


def _site_kl(guide_site, model_site):
    q, p = guide_site["fn"], model_site["fn"]
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError:
        value = guide_site["value"]
        kl = q.log_prob(value) - p.log_prob(value)
    return kl.sum() * guide_site["scale"]


class AdversarialLoss(ELBO):
    r"""Base class of the GAN objectives: an :class:`~pyro.infer.ELBO` whose losses are the pair
    ``(critic_loss, generator_loss)``.

    Real data are the value observed at the model's ``obs_site``; fakes are the same site's
    value when that site alone is unconditioned (:func:`~pyro.poutine.uncondition`), replayed
    against the guide's trace. The observation must be reparameterized (``Delta`` or
    ``Normal``), so gradients reach the generator through the fakes.

    :meth:`loss_and_grads` runs one backward through a *disjoint surrogate*: the critic's term
    sees ``fake.detach()``, the generator's term sees the critic with its parameters
    frozen, so each parameter set receives only its own player's
    gradient. With ``critic_steps = k`` the generator is updated on one step in ``k``; on the
    other steps the model and guide run without capturing their parameters, so
    :class:`~pyro.infer.SVI`'s optimizer does not touch them at all.

    **Random weights.** When the guide samples global sites (weights made random with
    :func:`~bayesgan.models.make_stochastic`, outside every plate of the observation), the
    generator's loss becomes ELBO-like,

    .. math::

        L_G = \mathbb{E}_{q(w)}\big[\ell_G(w)\big]
              + \frac{1}{N}\,\mathrm{KL}\big(q(w)\,\|\,p(w)\big),

    the divergence proxy :math:`\ell_G` (a mean over the batch) under weights drawn from the
    guide plus the KL term scaled to one data point, analytic where
    :func:`torch.distributions.kl_divergence` knows the pair (else the one-sample estimate).
    Local guide sites (a BiGAN encoder's :math:`z`) are not weights and add nothing.

    **MC dropout.** ``num_masks = M`` averages both losses over :math:`M` stochastic passes of
    the model and the critic (fresh latents and dropout masks each; the paper's ``n_mcd``). The
    critic's penalty is evaluated once per step, on the first pass's batch.

    After every call of :meth:`loss` or :meth:`loss_and_grads`, :attr:`last` holds that step's
    named values (floats): with random weights also ``kl``; after :meth:`loss_and_grads` also
    ``critic_grad_norm`` and ``generator_grad_norm``, the norms of the gradients just computed
    (the generator's is 0 on critic-only steps; with several pieces of a step accumulating
    gradients before the optimizer runs, they include what was already there).

    Subclasses with a critic define ``_critic_objective(v_real, v_fake) -> (loss, record)`` and
    ``_generator_objective(v_real, v_gen) -> loss`` on the critic's raw outputs; objectives
    without the usual critic (MMD) override ``_losses``.

    :param torch.nn.Module critic: the critic, or ``None`` for critic-free objectives.
    :param int critic_steps: critic updates per generator update.
    :param penalty: a critic penalty ``penalty(critic, real, fake) -> Tensor`` (see
        :mod:`bayesgan.penalties`), added to the critic's loss.
    :param constraint: a projection ``constraint(critic)`` applied in place before each step
        (e.g. :class:`~bayesgan.infer.WeightClipping`).
    :param generator_penalty: ``generator_penalty(generator_loss, params, fake) -> Tensor`` added
        to the generator's loss on the steps that update the generator (e.g.
        :class:`~bayesgan.penalties.GeneratorGradientPenalty`); :meth:`loss` leaves it out.
    :param str obs_site: the name of the model's observation site.
    :param str critic_name: the critic's name in Pyro's param store.
    :param callable backward: how to back-propagate the surrogate (default
        ``tensor.backward()``; e.g. ``fabric.backward``).
    :param int num_masks: stochastic passes averaged per step, :math:`M \ge 1`.
    :param int num_data: the training set's size :math:`N`; required with random weights.
    """

    def __init__(
        self,
        critic=None,
        *,
        critic_steps=1,
        penalty=None,
        constraint=None,
        generator_penalty=None,
        obs_site="x",
        critic_name="critic",
        backward=None,
        num_masks=1,
        num_data=None,
    ):
        super().__init__(num_particles=1)
        if critic is not None:
            _require_module(critic)
        if not isinstance(critic_steps, int) or critic_steps < 1:
            raise ValueError(f"Expected critic_steps to be an int >= 1, actual {critic_steps!r}")
        for name, value in (("penalty", penalty), ("constraint", constraint), ("generator_penalty", generator_penalty)):
            if value is not None and not callable(value):
                raise ValueError(f"Expected {name} to be callable or None, actual {type(value).__name__}")
        if not isinstance(num_masks, int) or num_masks < 1:
            raise ValueError(f"Expected num_masks to be an int >= 1, actual {num_masks!r}")
        if num_data is not None and not (isinstance(num_data, int) and num_data >= 1):
            raise ValueError(f"Expected num_data to be an int >= 1 or None, actual {num_data!r}")
        self.critic = critic
        self.critic_steps = critic_steps
        self.penalty = penalty
        self.constraint = constraint
        self.generator_penalty = generator_penalty
        self.obs_site = obs_site
        self.critic_name = critic_name
        self._backward = backward if backward is not None else torch.Tensor.backward
        self.num_masks = num_masks
        self.num_data = num_data
        self._batch = None
        self._generator_params = []
        self.step = 0
        self.last = {}

    # -- the three methods of Pyro's contract ---------------------------------------------
    def loss(self, model, guide, *args, **kwargs):
        """Both players' losses as floats, without building a graph or counting a step."""
        with torch.no_grad():
            losses, record = self._step_losses(model, guide, args, kwargs, generator=False)
        self._finish(losses, record, generator_updated=False)
        return tuple(float(x) for x in losses)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Both players' losses as tensors whose sum is the disjoint surrogate."""
        losses, record = self._step_losses(model, guide, args, kwargs, generator=True)
        self._check_finite(losses, record)
        return losses

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Compute both losses, back-propagate once, and return them as floats."""
        update_generator = (self.step + 1) % self.critic_steps == 0
        losses, record = self._step_losses(model, guide, args, kwargs, generator=update_generator)
        self._check_finite(losses, record)
        surrogate = losses[0] + losses[1] if update_generator else losses[0]
        if surrogate.requires_grad:
            self._backward(surrogate)
        record["critic_grad_norm"] = _grad_norm(self.critic.parameters() if self.critic is not None else [], surrogate)
        record["generator_grad_norm"] = _grad_norm(self._generator_params, surrogate)
        self._finish(losses, record, generator_updated=update_generator)
        self.step += 1
        return tuple(self.last[k] for k in ("critic_loss", "generator_loss"))

    # -- the template; subclasses provide the two objectives ---------------------------------
    def _step_losses(self, model, guide, args, kwargs, generator):
        """One step's ``((critic_loss, generator_loss), record)``: :meth:`_losses` averaged over
        ``num_masks`` passes, the critic's penalty on the first pass's batch, and the KL term of
        random weights."""
        if self.constraint is not None:
            self.constraint(self.critic)
        critic_loss = generator_loss = 0.0
        totals = {}
        for i in range(self.num_masks):
            (c, g), record = self._losses(model, guide, args, kwargs, generator)
            if i == 0:
                real, fake = self._batch[:2]
                traced = _trace_params(self._batch[2]) + _trace_params(self._batch[3])
                self._generator_params = traced if generator else []
            kl = self._kl_term(*self._batch[2:])
            if kl is not None:
                g = g + kl / self.num_data
                record["kl"] = kl
            critic_loss, generator_loss = critic_loss + c, generator_loss + g
            for name, value in record.items():
                totals[name] = totals.get(name, 0.0) + value
        self._batch = None
        n = self.num_masks
        critic_loss, generator_loss = critic_loss / n, generator_loss / n
        record = {name: value / n for name, value in totals.items()}
        if self.penalty is not None:
            penalty = self.penalty(self.critic, real, fake.detach())
            critic_loss = critic_loss + penalty
            record["penalty"] = penalty
        return (critic_loss, generator_loss), record

    def _losses(self, model, guide, args, kwargs, generator):
        """One pass: ``((critic_loss, generator_loss), record)`` without the critic's penalty;
        ``record`` maps names to tensors."""
        self._register(self.critic_name, self.critic)
        real, fake, model_trace, guide_trace = self._sample(model, guide, args, kwargs, generator)
        v_real, v_fake, v_gen = self._critic_forward(self.critic, real, fake, generator)
        critic_loss, record = self._critic_objective(v_real, v_fake)
        record["penalty"] = critic_loss.new_zeros(())  # the penalty itself: in _step_losses
        v = v_gen if generator else v_fake.detach()
        generator_loss = self._generator_objective(v_real.detach(), v)
        generator_loss = self._add_generator_penalty(generator_loss, record, model_trace, guide_trace, fake, generator)
        return (critic_loss, generator_loss), record

    def _critic_objective(self, v_real, v_fake):
        raise NotImplementedError

    def _generator_objective(self, v_real, v_gen):
        raise NotImplementedError

    def _add_generator_penalty(self, generator_loss, record, model_trace, guide_trace, fake, generator):
        if self.generator_penalty is None:
            return generator_loss
        penalty = generator_loss.new_zeros(())
        if generator:
            params = _trace_params(model_trace) + _trace_params(guide_trace)
            penalty = self.generator_penalty(generator_loss, params, fake)
        record["generator_penalty"] = penalty
        return generator_loss + penalty

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not use ELBO's particle traces")

    # -- shared helpers ---------------------------------------------------------------------
    def _sample(self, model, guide, args, kwargs, generator=True):
        """Run guide and model once; return ``(real, fake, model_trace, guide_trace)``.

        With ``generator=False`` the model and guide run under :func:`torch.no_grad` with their
        parameter sites hidden from SVI, so the generator is neither differentiated nor stepped.
        """
        if generator:
            self._batch = self._traced_sample(model, guide, args, kwargs)
        else:
            with torch.no_grad(), poutine.block(hide_types=["param"]):
                self._batch = self._traced_sample(model, guide, args, kwargs)
        return self._batch

    def _traced_sample(self, model, guide, args, kwargs):
        with poutine.trace() as tr:
            guide(*args, **kwargs)
        guide_trace = tr.trace
        with poutine.trace() as tr, _UnconditionSite(self.obs_site):
            with poutine.replay(trace=guide_trace):
                model(*args, **kwargs)
        model_trace = tr.trace
        site = self._observation(model_trace)
        real, fake = site["infer"]["obs"], site["value"]
        if is_validation_enabled():
            self._validate(real, fake)
        return real, fake, model_trace, guide_trace

    def _kl_term(self, model_trace, guide_trace):
        r""":math:`\mathrm{KL}(q(w) \| p(w))` summed over the guide's global sites (random
        weights: outside every plate of the observation), or ``None`` if it has none. Analytic
        where :func:`torch.distributions.kl_divergence` knows the pair, else the one-sample
        estimate :math:`\log q(w) - \log p(w)`."""
        obs_frames = {f.name for f in model_trace.nodes[self.obs_site]["cond_indep_stack"]}
        total = None
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site) or site["infer"].get("is_auxiliary"):
                continue
            if obs_frames & {f.name for f in site["cond_indep_stack"]}:
                continue  # a local latent (z, or a BiGAN encoder's code): not a weight
            prior = model_trace.nodes.get(name)
            if prior is None or prior["type"] != "sample":
                raise ValueError(
                    f"Expected the guide's site {name!r} in the model too, actual a guide-only "
                    f"site; the guide may sample only the model's random weights"
                )
            kl = _site_kl(site, prior)
            total = kl if total is None else total + kl
        if total is not None and self.num_data is None:
            raise ValueError(
                "Expected num_data (the training set's size) for a guide over random weights: the "
                "loss adds KL(q(w) || p(w)) / num_data to the generator's per-point loss; pass "
                "num_data=len(data) to the loss"
            )
        return total

    def _observation(self, model_trace):
        sites = [
            n for n, s in model_trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)
        ]
        if self.obs_site not in sites:  # a plate's name is not a sample site
            raise ValueError(
                f"Expected the model to have an observation site {self.obs_site!r}, actual sample "
                f"sites {sites}; name it in the model or pass obs_site= to the loss"
            )
        site = model_trace.nodes[self.obs_site]
        if not site["infer"].get("was_observed", False):
            raise ValueError(
                f"Expected site {self.obs_site!r} to be observed, but it has no data; call "
                f"svi.step(x) with the data batch (pyro.sample(..., obs=x) in the model)"
            )
        if not getattr(site["fn"], "has_rsample", False):
            base = site["fn"]
            while hasattr(base, "base_dist"):  # name Bernoulli, not its Independent wrapper
                base = base.base_dist
            raise ValueError(
                f"Expected a reparameterized observation at {self.obs_site!r} (Delta or Normal), "
                f"actual {type(base).__name__}; gradients could not reach the generator"
            )
        return site

    @staticmethod
    def _validate(real, fake):
        if real.shape != fake.shape:
            raise ValueError(
                f"Expected the data batch to have the generator's output shape "
                f"{tuple(fake.shape)}, actual {tuple(real.shape)}; check the data's shape and "
                f"the generator's output size"
            )
        if not torch.isfinite(real).all():
            bad = (~torch.isfinite(real)).reshape(real.shape[0], -1).any(-1).nonzero().flatten()
            raise ValueError(
                f"Expected finite data, actual NaN or inf in rows {bad[:10].tolist()}"
                f"{' ...' if len(bad) > 10 else ''}; drop or impute those rows"
            )

    def _critic_forward(self, critic, real, fake, generator):
        """Critic outputs ``(v_real, v_fake, v_gen)``; ``v_gen`` is ``None`` without generator.

        ``v_fake`` sees detached fakes (the critic's term); ``v_gen`` sees the live fakes through
        the critic with detached parameters (the generator's term).
        """
        if real.shape[0] == 1 and critic.training:
            _check_single_sample(critic)
        v_real = critic(real)
        v_fake = critic(fake.detach())
        v_gen = None
        if generator:
            v_gen = _call_frozen(critic, fake, higher_order=self.generator_penalty is not None)
        return v_real, v_fake, v_gen

    @staticmethod
    def _register(name, module):
        # Pyro holds the inner module's parameters (no "module." prefix); the wrapper is called.
        pyro.module(name, _registered(module, f"critic {name!r}"))

    def _check_finite(self, losses, record):
        if all(torch.isfinite(x).all() for x in losses):
            return
        raise TrainingDivergedError(
            f"{type(self).__name__} turned non-finite at step {self.step} (critic loss "
            f"{losses[0].item()}, generator loss {losses[1].item()}): {self._overflow_hint()}. "
            f"The parameters were not updated."
        )

    def _overflow_hint(self):
        return "the critic's output grew without bound; lower the learning rates"

    def _finish(self, losses, record, generator_updated):
        names = ["critic_loss", "generator_loss", *record]
        values = torch.stack([x.detach().reshape(()).to(torch.float64) for x in (*losses, *record.values())])
        self.last = dict(zip(names, values.tolist()))
        self.last["step"] = self.step
        self.last["generator_updated"] = generator_updated
