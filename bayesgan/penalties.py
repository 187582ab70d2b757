r"""Regularizers of the critic and of the generator, as small callables.

A critic penalty has the signature ``penalty(critic, real, fake) -> Tensor`` and is added to the
critic's loss; every critic-based loss takes one (or a sum: ``R1(1.0) + GradientPenalty(10.0)``)
through ``penalty=``. The fakes it receives are detached: a critic penalty never moves the
generator. Input gradients are taken with ``create_graph=True`` (double back-propagation), so
the penalty's gradient reaches the critic's weights.

:class:`GeneratorGradientPenalty` regularizes the generator instead; losses take it through
``generator_penalty=``.

>>> import torch
>>> critic = torch.nn.Linear(2, 1, bias=False)
>>> with torch.no_grad():
...     _ = critic.weight.copy_(torch.tensor([[3.0, 4.0]]))
>>> x = torch.randn(8, 2)
>>> GradientPenalty(1.0)(critic, x, x + 1).item()   # (||w|| - 1)^2 = (5 - 1)^2
16.0
"""

import torch

__all__ = [
    "GeneratorGradientPenalty",
    "GradientPenalty",
    "Lazy",
    "OutputPenalty",
    "Penalty",
    "R1",
    "R2",
    "WGANDiv",
]


def _check_weight(name, value):
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"Expected {name} >= 0, actual {value!r}")


def _input_gradient(critic, x):
    """``d critic(x) / d x`` per sample, differentiable with respect to the critic's weights."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.reshape(grad.shape[0], -1)


class Penalty:
    """Base class: a weighted critic penalty; ``a + b`` sums two penalties."""

    def __call__(self, critic, real, fake):
        raise NotImplementedError

    def __add__(self, other):
        if not isinstance(other, Penalty):
            return NotImplemented
        return _Sum(self, other)


class _Sum(Penalty):
    def __init__(self, *terms):
        self.terms = terms

    def __call__(self, critic, real, fake):
        return sum(term(critic, real, fake) for term in self.terms)

    def __repr__(self):
        return " + ".join(repr(t) for t in self.terms)


class GradientPenalty(Penalty):
    r"""The WGAN-GP penalty at random interpolates (Gulrajani et al., 2017).

    .. math::

        \lambda\, \mathbb{E}_{\hat x}\big[(\|\nabla_{\hat x} D(\hat x)\|_2 - c)^2\big], \qquad
        \hat x = \epsilon x + (1 - \epsilon) \tilde x, \; \epsilon \sim U[0, 1] \text{ per sample};

    one-sided: :math:`\lambda\,\mathbb{E}[\max(0, \|\nabla D(\hat x)\| - c)^2]`, which penalizes
    only slopes above :math:`c` and biases the Wasserstein estimate less.

    :param float weight: :math:`\lambda` (10 in the paper).
    :param float center: :math:`c`, the target norm.
    :param bool one_sided: penalize only norms above ``center``.
    """

    def __init__(self, weight=10.0, *, center=1.0, one_sided=False):
        _check_weight("weight", weight)
        self.weight, self.center, self.one_sided = weight, center, one_sided

    def __call__(self, critic, real, fake):
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, dtype=real.dtype, device=real.device)
        norm = _input_gradient(critic, eps * real + (1 - eps) * fake).norm(dim=1)
        gap = norm - self.center
        if self.one_sided:
            gap = gap.clamp(min=0)
        return self.weight * (gap**2).mean()

    def __repr__(self):
        return f"GradientPenalty({self.weight}, center={self.center}, one_sided={self.one_sided})"


class R1(Penalty):
    r"""Zero-centred gradient penalty on real data (Mescheder et al., 2018):
    :math:`\frac{\gamma}{2}\,\mathbb{E}_P \|\nabla_x D(x)\|^2`.

    :param float gamma: :math:`\gamma` (note the 1/2: code that adds
        ``reg_param * mean ||grad||^2`` uses ``reg_param = gamma / 2``).
    """

    def __init__(self, gamma=10.0):
        _check_weight("gamma", gamma)
        self.gamma = gamma

    def _points(self, real, fake):
        return real

    def __call__(self, critic, real, fake):
        grad = _input_gradient(critic, self._points(real, fake))
        return 0.5 * self.gamma * grad.pow(2).sum(1).mean()

    def __repr__(self):
        return f"{type(self).__name__}({self.gamma})"


class R2(R1):
    r"""Zero-centred gradient penalty on generated data:
    :math:`\frac{\gamma}{2}\,\mathbb{E}_Q \|\nabla_x D(x)\|^2`."""

    def _points(self, real, fake):
        return fake


class WGANDiv(Penalty):
    r"""The WGAN-div penalty (Wu et al., 2018) at real and at generated points, as in the paper's
    code: :math:`\frac{k}{2}\big(\mathbb{E}_P\|\nabla D\|^p + \mathbb{E}_Q\|\nabla D\|^p\big)`.

    :param float k: the weight (2 in the paper's code).
    :param float p: the power (6 in the paper's code).
    """

    def __init__(self, k=2.0, p=6.0):
        _check_weight("k", k)
        if not p > 0:
            raise ValueError(f"Expected p > 0, actual {p!r}")
        self.k, self.p = k, p

    def __call__(self, critic, real, fake):
        norms = [_input_gradient(critic, x).norm(dim=1).pow(self.p).mean() for x in (real, fake)]
        return 0.5 * self.k * (norms[0] + norms[1])

    def __repr__(self):
        return f"WGANDiv(k={self.k}, p={self.p})"


class OutputPenalty(Penalty):
    r"""A penalty on the size of the critic's raw output,
    :math:`w\,(\mathbb{E}_P[V^2] + \mathbb{E}_Q[V^2])`.

    Pointwise the penalized f-GAN critic maximizes :math:`p\,g_f(V) - q\,f^*(g_f(V)) - w(p + q)V^2`,
    which depends on :math:`x` only through :math:`p/q`; at :math:`P = Q` the optimal :math:`V`
    is a constant, so :math:`P = Q` stays a stationary point of the generator. It keeps
    :math:`V` in the live range of a bounded activation (total variation's tanh) and finite
    where the divergence is infinite (Neyman :math:`\chi^2` with a generator wider than the
    data). It evaluates the critic once more on each batch.

    :param float weight: :math:`w` (0.1 was measured for total variation and Neyman).
    """

    def __init__(self, weight=0.1):
        _check_weight("weight", weight)
        self.weight = weight

    def __call__(self, critic, real, fake):
        return self.weight * (critic(real).pow(2).mean() + critic(fake).pow(2).mean())

    def __repr__(self):
        return f"OutputPenalty({self.weight})"


class Lazy(Penalty):
    r"""Apply a penalty on one call in ``every``, multiplied by ``every`` (StyleGAN2-ADA's lazy
    regularization), so that its average strength is unchanged at a fraction of the cost.

    .. note:: With Adam the lazy steps see a gradient ``every`` times larger. StyleGAN2-ADA
        compensates in the optimizer: with ``c = every / (every + 1)`` it uses ``lr * c`` and
        ``betas ** c`` for the regularized player. With Pyro's optimizers, pass a callable of
        the parameter name that returns those values for the critic's parameters.

    :param Penalty penalty: the penalty to apply lazily.
    :param int every: the period ``k``; the penalty is applied on calls 0, k, 2k, ...
    """

    def __init__(self, penalty, *, every=16):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"Expected every to be an int >= 1, actual {every!r}")
        self.penalty, self.every, self.calls = penalty, every, 0

    def __call__(self, critic, real, fake):
        active = self.calls % self.every == 0
        self.calls += 1
        if not active:
            return torch.zeros((), dtype=real.dtype, device=real.device)
        return self.every * self.penalty(critic, real, fake)

    def __repr__(self):
        return f"Lazy({self.penalty!r}, every={self.every})"


class GeneratorGradientPenalty:
    r"""The paper's gradient regularization of the generator, by double back-propagation.

    ``wrt="parameters"`` (default) adds to the generator's loss

    .. math:: \lambda \, \|\nabla_\psi L_G\|_2^2,

    the squared norm of the generator loss's gradient with respect to the generator's
    parameters :math:`\psi`. The gradient is built with ``create_graph=True``, so the update
    becomes :math:`\nabla_\psi L_G + 2\lambda H \nabla_\psi L_G` (the reference code builds it
    from ``param.grad`` and so does nothing). ``wrt="samples"`` adds
    :math:`\lambda\,\frac1n\sum_i \|\partial L_G / \partial \tilde x_i\|_2`, the paper's variant
    for MMD, on the generated samples :math:`\tilde x_i`.

    :param float weight: :math:`\lambda`.
    :param str wrt: ``"parameters"`` or ``"samples"``.
    """

    def __init__(self, weight, *, wrt="parameters"):
        _check_weight("weight", weight)
        if wrt not in ("parameters", "samples"):
            raise ValueError(f"Expected wrt in ('parameters', 'samples'), actual {wrt!r}")
        self.weight, self.wrt = weight, wrt

    def __call__(self, generator_loss, params, fake):
        if self.wrt == "samples":
            (grad,) = torch.autograd.grad(generator_loss, fake, create_graph=True)
            return self.weight * grad.reshape(grad.shape[0], -1).norm(dim=1).mean()
        params = [p for p in params if p.requires_grad]
        if not params:
            return generator_loss.new_zeros(())
        grads = torch.autograd.grad(generator_loss, params, create_graph=True, allow_unused=True)
        return self.weight * sum(g.pow(2).sum() for g in grads if g is not None)

    def __repr__(self):
        return f"GeneratorGradientPenalty({self.weight}, wrt={self.wrt!r})"
