"""Sharpness-aware minimization as a wrapper around any loss (Foret et al., 2021; Kwon et al., 2021)."""

import contextlib

import torch
import pyro.poutine as poutine
from pyro.infer import ELBO

__all__ = ["SAM"]

_PLAYERS = ("generator", "critic")


class SAM(ELBO):
    r"""Sharpness-aware minimization of any bayesgan loss, for one or both players.

    For each chosen player with parameters :math:`w` and gradient :math:`g = \nabla L(w)`, the
    step's gradient is taken at the perturbed point :math:`w + \hat\epsilon`,

    .. math::

        \hat\epsilon = \rho\,\frac{g}{\|g\|_2} \;\;\text{(SAM)}, \qquad
        \hat\epsilon = \rho\,\frac{T_w^2\, g}{\|T_w\, g\|_2}, \; T_w = \mathrm{diag}(|w| + \eta)
        \;\;\text{(adaptive SAM)},

    and the parameters are then restored bit for bit, so the optimizer (any Pyro optimizer)
    applies :math:`\nabla L(w + \hat\epsilon)` at :math:`w`. Norms are per player, as with one SAM
    optimizer per network. Both passes use the same random numbers (latents, interpolates), so
    the second pass evaluates the same stochastic objective; BatchNorm running statistics are
    restored after the second pass, so only the first pass updates them. The returned losses are
    those at :math:`w`. The paper's configuration, adaptive SAM on both players over Adam:

    ``SVI(model, guide, Adam({"lr": 1e-3, "betas": (0.5, 0.999)}), loss=SAM(loss, rho=2.0, adaptive=True))``

    .. note:: ASAM needs a roughly ten times larger :math:`\rho` than SAM (0.05 for SAM and 2.0
        for ASAM in the widely used implementation). Each step costs two forward-backward passes.

    :param loss: a bayesgan loss (any :class:`~bayesgan.infer.AdversarialLoss`).
    :param float rho: the neighbourhood radius :math:`\rho \ge 0`.
    :param bool adaptive: use adaptive SAM (ASAM).
    :param players: the players to perturb, a subset of ``("generator", "critic")``; the
        generator's side is every captured parameter that is not the critic's.
    :param float eta: the ASAM offset :math:`\eta` (0 as in the common implementation).

    **References**

    1. P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, *Sharpness-Aware Minimization for
       Efficiently Improving Generalization*, ICLR 2021.
    2. J. Kwon, J. Kim, H. Park, I. K. Choi, *ASAM: Adaptive Sharpness-Aware Minimization for
       Scale-Invariant Learning of Deep Neural Networks*, ICML 2021.

    >>> import torch
    >>> from bayesgan.infer import FGANLoss
    >>> SAM(FGANLoss("js", torch.nn.Linear(2, 1)), rho=0.05)
    SAM(FGANLoss(JensenShannon(), critic_steps=1, generator_objective='nonsaturating'), rho=0.05, adaptive=False, players=('generator', 'critic'))
    """

    def __init__(self, loss, *, rho, adaptive=False, players=_PLAYERS, eta=0.0):
        super().__init__(num_particles=1)
        if not hasattr(loss, "loss_and_grads"):
            raise ValueError(f"Expected a loss with loss_and_grads, actual {type(loss).__name__}")
        if not (isinstance(rho, (int, float)) and rho >= 0):
            raise ValueError(f"Expected rho >= 0, actual {rho!r}")
        players = tuple(players)
        if not players or any(p not in _PLAYERS for p in players):
            raise ValueError(f"Expected players to be a non-empty subset of {_PLAYERS}, actual {players}")
        if not eta >= 0:
            raise ValueError(f"Expected eta >= 0, actual {eta!r}")
        self.base, self.rho, self.adaptive, self.players, self.eta = loss, float(rho), adaptive, players, eta

    @property
    def last(self):
        """The wrapped loss's record of the last step (at the unperturbed parameters)."""
        return self.base.last

    @property
    def critic(self):
        """The wrapped loss's critic (``None`` if it has none)."""
        return getattr(self.base, "critic", None)

    @property
    def step(self):
        return self.base.step

    def loss(self, model, guide, *args, **kwargs):
        return self.base.loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return self.base.differentiable_loss(model, guide, *args, **kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("SAM does not use ELBO's particle traces")

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """First pass at w, perturb, second pass at the perturbed point, restore w."""
        rng = _rng_state()
        counters = _counters(self.base, model)
        with poutine.trace(param_only=True) as capture:
            losses = self.base.loss_and_grads(model, guide, *args, **kwargs)
        params = _unique(site["value"].unconstrained() for site in capture.trace.nodes.values())
        perturbed = self._chosen(params)
        if self.rho == 0 or not perturbed:
            return losses
        after = _counters(self.base, model)
        chosen_ids = {id(p) for p in perturbed}
        kept = [(p, p.grad) for p in params if id(p) not in chosen_ids]
        originals = [p.detach().clone() for p in perturbed]
        with torch.no_grad():
            for group in self._groups(perturbed):
                for p, e in zip(group, self._perturbation(group)):
                    p.add_(e)
        for p in params:
            p.grad = None
        first_last = self.base.last
        _set_counters(counters)
        _set_rng_state(rng)
        try:
            with _frozen_batchnorm_statistics():
                self.base.loss_and_grads(model, guide, *args, **kwargs)
        finally:
            with torch.no_grad():
                for p, w in zip(perturbed, originals):
                    p.copy_(w)
            for p, g in kept:
                p.grad = g
            self.base.last = first_last
            _set_counters(after)
        return losses

    def _chosen(self, params):
        critic = getattr(self.base, "critic", None)
        critic_ids = {id(p) for p in critic.parameters()} if critic is not None else set()
        chosen = []
        for p in params:
            if p.grad is None:
                continue
            player = "critic" if id(p) in critic_ids else "generator"
            if player in self.players:
                chosen.append(p)
        return chosen

    def _groups(self, perturbed):
        critic = getattr(self.base, "critic", None)
        critic_ids = {id(p) for p in critic.parameters()} if critic is not None else set()
        groups = ([p for p in perturbed if id(p) not in critic_ids], [p for p in perturbed if id(p) in critic_ids])
        return [g for g in groups if g]

    def _perturbation(self, group):
        if self.adaptive:
            scaled = [(p.abs() + self.eta) * p.grad for p in group]
            norm = torch.sqrt(sum(s.pow(2).sum() for s in scaled)).clamp(min=1e-12)
            return [self.rho * (p.abs() + self.eta) * s / norm for p, s in zip(group, scaled)]
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in group)).clamp(min=1e-12)
        return [self.rho * p.grad / norm for p in group]

    def __repr__(self):
        return f"SAM({self.base!r}, rho={self.rho}, adaptive={self.adaptive}, players={self.players})"


def _rng_state():
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _counters(loss, model):
    """The step counters a second pass would advance: the loss's step, lazy penalties' call
    counts, and the step of a :func:`~bayesgan.handlers.relax` wrapper around the model."""
    found = [(loss, "step")]
    stack = [getattr(loss, "penalty", None)]
    while stack:
        obj = stack.pop()
        if obj is None:
            continue
        if hasattr(obj, "calls"):
            found.append((obj, "calls"))
        stack.extend(getattr(obj, "terms", ()))
        stack.append(getattr(obj, "penalty", None))
    messenger = getattr(model, "messenger", None)
    if messenger is not None and hasattr(messenger, "step"):
        found.append((messenger, "step"))
    return [(obj, attr, getattr(obj, attr)) for obj, attr in found]


def _set_counters(counters):
    for obj, attr, value in counters:
        setattr(obj, attr, value)


def _unique(tensors):
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


@contextlib.contextmanager
def _frozen_batchnorm_statistics():
    """Restore the running statistics of every BatchNorm layer that runs inside the block."""
    saved = {}

    def hook(module, inputs):
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module not in saved:
            saved[module] = {k: b.clone() for k, b in module.named_buffers(recurse=False)}

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        with torch.no_grad():
            for module, buffers in saved.items():
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)
