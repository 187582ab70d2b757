r"""The flatness of a generator's loss (sharpness).

The paper measures flatness by the top eigenvalue of the Hessian of the generator's loss with
respect to the generator's parameters, with the critic held fixed, averaged over training
batches. Everything here needs only Hessian-vector products,

.. math:: H v = \nabla_\psi \big(\nabla_\psi L(\psi)^\top v\big),

computed by double back-propagation through one graph, so the Hessian is never formed.

>>> import torch
>>> w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
>>> A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
>>> values = hessian_eigenvalues(0.5 * w @ A @ w, [w], k=2)
>>> [round(v, 6) for v in values.tolist()]
[3.618034, 1.381966]
"""


import pyro
import pyro.poutine as poutine
import pyro.util
import torch

from ..infer.sam import _counters, _set_counters

__all__ = ["generator_sharpness", "hessian_eigenvalues", "hessian_trace", "sharpness"]


def _hvp_operator(loss, params):
    params = list(params)
    if not params:
        raise ValueError("Expected at least one parameter, actual none")
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not pairs:
        raise ValueError("Expected the loss to depend on the parameters, actual no gradient reaches them")
    flat_grad = torch.cat([g.reshape(-1) for _, g in pairs])
    used = [p for p, _ in pairs]

    def hvp(v):
        hv = torch.autograd.grad(flat_grad, used, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, used)]).detach()

    return hvp, flat_grad.numel(), flat_grad.dtype, flat_grad.device


def _lanczos(hvp, n, dtype, device, num_iterations, generator):
    """Lanczos with full re-orthogonalization; returns the Ritz values, ascending."""
    m = min(n, num_iterations)
    v = torch.randn(n, dtype=dtype, device="cpu", generator=generator).to(device)
    basis = [v / v.norm()]
    alphas, betas = [], []
    for j in range(m):
        w = hvp(basis[j])
        alphas.append(torch.dot(w, basis[j]))
        q = torch.stack(basis)
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = w.norm()
        if j == m - 1 or beta <= 1e-10 * max(1.0, abs(alphas[-1].item())):
            break
        betas.append(beta)
        basis.append(w / beta)
    t = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(t)


def hessian_eigenvalues(loss, params, *, k=1, num_iterations=100, method="lanczos", generator=None):
    """The ``k`` largest eigenvalues of the Hessian of a scalar ``loss`` with respect to ``params``.

    :param torch.Tensor loss: a scalar whose graph reaches ``params``.
    :param params: the parameters (tensors with ``requires_grad``).
    :param int k: how many of the largest (algebraic) eigenvalues.
    :param int num_iterations: Lanczos steps (exact once it reaches the number of parameters) or
        power iterations.
    :param str method: ``"lanczos"`` (default) or ``"power"`` (the top eigenvalue of largest
        magnitude only, ``k=1``).
    :param torch.Generator generator: for the random start vector.
    :returns: a tensor of ``k`` eigenvalues, largest first.
    """
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"Expected k to be an int >= 1, actual {k!r}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"Expected method 'lanczos' or 'power', actual {method!r}")
    hvp, n, dtype, device = _hvp_operator(loss, params)
    if method == "power":
        if k != 1:
            raise ValueError(f"Expected k=1 with method='power', actual k={k}")
        return _power(hvp, n, dtype, device, num_iterations, generator)
    values = _lanczos(hvp, n, dtype, device, num_iterations, generator)
    return values.flip(0)[: min(k, values.numel())]


def _power(hvp, n, dtype, device, num_iterations, generator):
    v = torch.randn(n, dtype=dtype, generator=generator).to(device)
    v = v / v.norm()
    value = torch.zeros((), dtype=dtype, device=device)
    for _ in range(num_iterations):
        w = hvp(v)
        value = torch.dot(w, v)
        norm = w.norm()
        if norm == 0:
            break
        v = w / norm
    return value.reshape(1)


def hessian_trace(loss, params, *, num_samples=100, generator=None):
    r"""Hutchinson's estimate of :math:`\mathrm{tr}\,H = \mathbb{E}[v^\top H v]`, :math:`v` Rademacher.

    :returns: ``(estimate, standard_error)`` as floats.
    """
    if not (isinstance(num_samples, int) and num_samples >= 1):
        raise ValueError(f"Expected num_samples to be an int >= 1, actual {num_samples!r}")
    hvp, n, dtype, device = _hvp_operator(loss, params)
    draws = []
    for _ in range(num_samples):
        v = (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(dtype=dtype, device=device)
        draws.append(torch.dot(v, hvp(v)))
    draws = torch.stack(draws)
    stderr = draws.std().item() / num_samples**0.5 if num_samples > 1 else float("nan")
    return draws.mean().item(), stderr


def sharpness(loss_fn, params, batches, **kwargs):
    """The top Hessian eigenvalue(s) of ``loss_fn(batch)`` with respect to ``params``, averaged
    over ``batches``; keyword arguments go to :func:`hessian_eigenvalues`.

    :param callable loss_fn: ``loss_fn(batch) -> scalar tensor``.
    :param params: the parameters.
    :param batches: an iterable of batches.
    :returns: a tensor of ``k`` averaged eigenvalues.
    """
    values = [hessian_eigenvalues(loss_fn(batch), params, **kwargs) for batch in batches]
    if not values:
        raise ValueError("Expected at least one batch, actual none")
    return torch.stack(values).mean(0)


def generator_sharpness(loss, model, guide, batches, *, seed=0, **kwargs):
    """The paper's flatness measure for a GAN loss: the top Hessian eigenvalue(s) of the
    generator's loss with respect to the generator's (model and guide) parameters, with the
    critic held fixed, averaged over ``batches``. Each batch uses fixed random numbers
    (``seed + i``), so every Hessian-vector product sees the same latents. The global random
    streams and the counters a loss call advances (a :func:`~bayesgan.handlers.relax` step, a
    :class:`~bayesgan.penalties.Lazy` phase) are restored afterwards. Put networks in the
    mode you want measured (the paper: eval mode, EMA weights) before calling.

    :param loss: a bayesgan loss with a ``differentiable_loss`` returning ``(critic, generator)``.
    :param model: the model.
    :param guide: the guide.
    :param batches: an iterable of data batches (each passed to model and guide).
    :param int seed: the base seed.
    :returns: a tensor of ``k`` averaged eigenvalues.
    """
    critic = getattr(loss, "critic", None)
    critic_ids = {id(p) for p in critic.parameters()} if critic is not None else set()
    values = []
    # A measurement must not change the training run: restore the global random streams that
    # the seeding replaces, and the counters a loss call advances (relax's step, Lazy's phase).
    rng, counters = pyro.util.get_rng_state(), _counters(getattr(loss, "base", loss), model)
    try:
        for i, batch in enumerate(batches):
            pyro.set_rng_seed(seed + i)
            with poutine.trace(param_only=True) as capture:
                _, generator_loss = loss.differentiable_loss(model, guide, batch)
            params = [site["value"].unconstrained() for site in capture.trace.nodes.values()]
            params = [p for p in dict.fromkeys(params) if id(p) not in critic_ids]
            values.append(hessian_eigenvalues(generator_loss, params, **kwargs))
    finally:
        pyro.util.set_rng_state(rng)
        _set_counters(counters)
    if not values:
        raise ValueError("Expected at least one batch, actual none")
    return torch.stack(values).mean(0)
