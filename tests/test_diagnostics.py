"""Sharpness: Lanczos and power iteration against dense Hessians (a known quadratic, a small
network), Hutchinson's trace within its standard error, the average over batches, the
generator-only Hessian of a GAN loss with the critic fixed, and every ValueError branch."""

import random

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from bayesgan.diagnostics import generator_sharpness, hessian_eigenvalues, hessian_trace, sharpness
from bayesgan.handlers import relax
from bayesgan.infer import FGANLoss, MMDLoss, WassersteinLoss
from bayesgan.models import GeneratorModel
from bayesgan.penalties import R1, Lazy

pytestmark = pytest.mark.usefixtures("float64")




def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def quadratic_matrix(eigenvalues, seed=0):
    """Q diag(eigenvalues) Q^T with a random orthogonal Q."""
    d = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=seeded(seed)))
    return q @ torch.diag(torch.tensor(eigenvalues)) @ q.T


EIGENVALUES = [5.0, 3.0, 2.0, 1.0, 0.5, -1.0, -2.5]


def quadratic_loss(A):
    w = torch.randn(A.shape[0], generator=seeded(1)).requires_grad_(True)
    return 0.5 * w @ A @ w, [w]


# -- a known quadratic ---------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_on_a_quadratic(k):
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    values = hessian_eigenvalues(loss, params, k=k, generator=seeded())
    assert values.shape == (k,)
    assert torch.allclose(values, torch.tensor(EIGENVALUES[:k]), rtol=1e-4, atol=0)


def test_lanczos_exact_once_it_spans_the_space():
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    values = hessian_eigenvalues(loss, params, k=len(EIGENVALUES), generator=seeded())
    assert torch.allclose(values, torch.tensor(EIGENVALUES), rtol=1e-10, atol=1e-10)
    # k beyond the dimension returns every eigenvalue
    assert hessian_eigenvalues(loss, params, k=20, generator=seeded()).numel() == len(EIGENVALUES)


def test_power_on_a_quadratic():
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    value = hessian_eigenvalues(loss, params, method="power", generator=seeded())
    assert value.shape == (1,)
    assert value.item() == pytest.approx(5.0, rel=1e-4)


def test_power_finds_the_largest_magnitude():
    """Power iteration converges to the eigenvalue of largest |lambda|, here negative."""
    loss, params = quadratic_loss(quadratic_matrix([1.0, 0.5, -4.0]))
    value = hessian_eigenvalues(loss, params, method="power", num_iterations=200, generator=seeded())
    assert value.item() == pytest.approx(-4.0, rel=1e-4)


def test_eigenvalues_over_several_parameter_tensors():
    A = quadratic_matrix(EIGENVALUES)
    w = torch.randn(7, generator=seeded(1))
    a, b = w[:3].clone().requires_grad_(True), w[3:].clone().requires_grad_(True)
    ab = torch.cat([a, b])
    values = hessian_eigenvalues(0.5 * ab @ A @ ab, [a, b], k=3, generator=seeded())
    assert torch.allclose(values, torch.tensor(EIGENVALUES[:3]), rtol=1e-8)


# -- a small network, against the dense Hessian --------------------------------------------------
def small_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(20, 2)
    y = torch.sin(x.sum(-1, keepdim=True))
    return net, x, y


def network_loss(net, x, y, params=None):
    out = net(x) if params is None else functional_call(net, params, (x,))
    return (out - y).pow(2).mean()


def dense_hessian(net, x, y):
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def f(v):
        params = {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes), shapes)}
        return network_loss(net, x, y, params)

    return torch.autograd.functional.hessian(f, flat)


def test_small_network_dense_reference_is_indefinite():
    net, x, y = small_network()
    eig = torch.linalg.eigvalsh(dense_hessian(net, x, y))
    assert eig.numel() == 17 and eig[0] < 0 < eig[-1]


@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_on_a_small_network(k):
    net, x, y = small_network()
    want = torch.linalg.eigvalsh(dense_hessian(net, x, y)).flip(0)[:k]
    values = hessian_eigenvalues(network_loss(net, x, y), list(net.parameters()), k=k, generator=seeded())
    assert torch.allclose(values, want, rtol=1e-4, atol=0)


def test_power_on_a_small_network():
    net, x, y = small_network()
    eig = torch.linalg.eigvalsh(dense_hessian(net, x, y))
    want = eig[eig.abs().argmax()]
    value = hessian_eigenvalues(
        network_loss(net, x, y), list(net.parameters()), method="power", num_iterations=1000, generator=seeded()
    )
    assert value.item() == pytest.approx(want.item(), rel=1e-4)


def test_hessian_trace_within_three_standard_errors():
    net, x, y = small_network()
    trace = torch.trace(dense_hessian(net, x, y)).item()
    loss = network_loss(net, x, y)
    estimate, stderr = hessian_trace(loss, list(net.parameters()), num_samples=200, generator=seeded())
    assert stderr > 0
    assert abs(estimate - trace) < 3 * stderr


def test_hessian_trace_of_a_diagonal_hessian_is_exact():
    """v^T D v = tr D for every Rademacher v: no variance."""
    w = torch.randn(5, generator=seeded(1)).requires_grad_(True)
    d = torch.tensor([1.0, 2.0, -3.0, 0.5, 4.0])
    estimate, stderr = hessian_trace((0.5 * d * w**2).sum(), [w], num_samples=10, generator=seeded())
    assert estimate == pytest.approx(4.5, abs=1e-12)
    assert stderr == pytest.approx(0.0, abs=1e-12)
    _, stderr = hessian_trace((0.5 * d * w**2).sum(), [w], num_samples=1, generator=seeded())
    assert stderr != stderr  # NaN: one draw has no standard error


# -- sharpness over batches ----------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2])
def test_sharpness_averages_over_batches(k):
    w = torch.randn(4, generator=seeded(1)).requires_grad_(True)
    spectra = [[4.0, 1.0, 0.0, -1.0], [2.0, 1.5, 1.0, 0.0], [9.0, -3.0, 3.0, 1.0]]
    batches = [quadratic_matrix(ev, seed=i) for i, ev in enumerate(spectra)]
    value = sharpness(lambda A: 0.5 * w @ A @ w, [w], batches, k=k, generator=seeded())
    want = torch.stack([torch.linalg.eigvalsh(A).flip(0)[:k] for A in batches]).mean(0)
    assert value.shape == (k,)
    assert torch.allclose(value, want, rtol=1e-8)
    assert torch.allclose(value, torch.tensor([5.0, 11 / 6][:k]), rtol=1e-8)  # (4 + 2 + 9) / 3, (1 + 1.5 + 3) / 3


def test_sharpness_of_a_network_over_batches():
    net, x, y = small_network()
    batches = [(x[:10], y[:10]), (x[10:], y[10:])]
    want = torch.stack([torch.linalg.eigvalsh(dense_hessian(net, bx, by))[-1] for bx, by in batches]).mean()
    value = sharpness(lambda b: network_loss(net, *b), list(net.parameters()), batches, generator=seeded())
    assert value.item() == pytest.approx(want.item(), rel=1e-4)


# -- the generator's sharpness in a GAN ----------------------------------------------------------
def guide(*args, **kwargs):
    pass


def tiny_gan():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    critic = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    batches = [torch.randn(12, 2) + 1.0, torch.randn(12, 2) - 0.5]
    return G, critic, GeneratorModel(G, latent_dim=2), batches


def dense_generator_hessian(G, critic, model, batch, seed, generator_loss):
    """The Hessian of L_G(psi) = generator_loss(critic(G_psi(z))) over the generator's parameters
    psi alone, the critic fixed, z the latents the model draws under ``seed``."""
    pyro.set_rng_seed(seed)
    z = poutine.trace(model).get_trace(batch).nodes["z"]["value"]
    names = [n for n, _ in G.named_parameters()]
    shapes = [p.shape for p in G.parameters()]
    sizes = [p.numel() for p in G.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in G.parameters()])
    frozen = {n: p.detach() for n, p in critic.named_parameters()}

    def f(v):
        params = {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes), shapes)}
        fake = functional_call(G, params, (z,))
        return generator_loss(functional_call(critic, frozen, (fake,)))

    return torch.autograd.functional.hessian(f, flat)


# name: (the loss, L_G written by hand as a function of the critic's raw output v on the fakes)
LOSSES = {
    "gan": (lambda c: FGANLoss("gan", c, generator_objective="nonsaturating"), lambda v: F.softplus(-v).mean()),
    "kl": (lambda c: FGANLoss("kl", c, generator_objective="saturating"), lambda v: -torch.exp(v - 1).mean()),
    "wgan": (lambda c: WassersteinLoss(c), lambda v: -v.mean()),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("k", [1, 3])
def test_generator_sharpness_is_the_generator_only_hessian(name, k):
    """Against dense Hessians with the same latents (seed + i for batch i), averaged over the
    batches; the critic's weights and gradients are left alone."""
    G, critic, model, batches = tiny_gan()
    make_loss, generator_loss = LOSSES[name]
    wants = []
    for i, batch in enumerate(batches):
        H = dense_generator_hessian(G, critic, model, batch, 3 + i, generator_loss)
        assert H.shape == (17, 17)  # the generator's parameters only
        wants.append(torch.linalg.eigvalsh(H).flip(0)[:k])
    want = torch.stack(wants).mean(0)
    critic_before = [p.detach().clone() for p in critic.parameters()]
    value = generator_sharpness(make_loss(critic), model, guide, batches, seed=3, k=k, generator=seeded())
    assert value.shape == (k,)
    assert torch.allclose(value, want, rtol=1e-4, atol=1e-10)
    assert all(torch.equal(a, p) for a, p in zip(critic_before, critic.parameters()))
    assert all(p.grad is None for p in (*critic.parameters(), *G.parameters()))


def test_generator_sharpness_is_not_the_joint_hessian():
    """The check can tell: the Hessian of the same L_G over the generator's and the critic's
    parameters together has another top eigenvalue."""
    G, critic, model, batches = tiny_gan()
    value = generator_sharpness(FGANLoss("gan", critic), model, guide, batches[:1], seed=3, generator=seeded())
    pyro.set_rng_seed(3)
    z = poutine.trace(model).get_trace(batches[0]).nodes["z"]["value"]
    modules = (G, critic)
    names = [[n for n, _ in m.named_parameters()] for m in modules]
    shapes = [p.shape for m in modules for p in m.parameters()]
    sizes = [p.numel() for m in modules for p in m.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for m in modules for p in m.parameters()])

    def f(v):
        tensors = [t.reshape(s) for t, s in zip(v.split(sizes), shapes)]
        g_params = dict(zip(names[0], tensors[: len(names[0])]))
        c_params = dict(zip(names[1], tensors[len(names[0]) :]))
        fake = functional_call(G, g_params, (z,))
        return F.softplus(-functional_call(critic, c_params, (fake,))).mean()

    joint = torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat))[-1]
    assert not torch.allclose(value, joint, rtol=1e-2)


def test_generator_sharpness_of_mmd_without_critic():
    """With no critic every captured parameter is the generator's; L_G = MMD^2."""
    G, _, model, batches = tiny_gan()
    loss = MMDLoss()
    pyro.set_rng_seed(0)
    z = poutine.trace(model).get_trace(batches[0]).nodes["z"]["value"]
    names = [n for n, _ in G.named_parameters()]
    shapes = [p.shape for p in G.parameters()]
    sizes = [p.numel() for p in G.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in G.parameters()])

    def f(v):
        params = {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes), shapes)}
        return loss._mmd2(batches[0], functional_call(G, params, (z,)))

    want = torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat))[-1]
    value = generator_sharpness(loss, model, guide, batches[:1], seed=0, generator=seeded())
    assert value.item() == pytest.approx(want.item(), rel=1e-4)


def test_generator_sharpness_leaves_training_state_alone():
    """A measurement mid-training changes nothing the training depends on: the global random
    streams continue as without it, and a relax schedule's step and a Lazy penalty's phase do
    not advance; nor do the weights."""
    G, critic, model, batches = tiny_gan()
    lazy = Lazy(R1(1.0), every=2)
    relaxed = relax(model, scale=lambda t: 0.1 / (1 + t))
    loss = FGANLoss("gan", critic, penalty=lazy)
    pyro.set_rng_seed(123)
    want = (torch.rand(3), random.random(), np.random.rand())
    pyro.set_rng_seed(123)
    before = [p.detach().clone() for p in (*G.parameters(), *critic.parameters())]
    generator_sharpness(loss, relaxed, guide, batches, seed=0, generator=seeded())
    assert (relaxed.messenger.step, lazy.calls, loss.step) == (0, 0, 0)
    assert torch.equal(torch.rand(3), want[0])
    assert (random.random(), np.random.rand()) == want[1:]
    assert all(torch.equal(a, p) for a, p in zip(before, (*G.parameters(), *critic.parameters())))
    # the relaxed loss is measured at step 0 each time: the same value twice
    again = generator_sharpness(loss, relaxed, guide, batches, seed=0, generator=seeded())
    assert torch.equal(again, generator_sharpness(loss, relaxed, guide, batches, seed=0, generator=seeded()))


# -- ValueError branches -------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, -1, 1.5, "1"])
def test_bad_k(k):
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    with pytest.raises(ValueError, match="Expected k to be an int >= 1"):
        hessian_eigenvalues(loss, params, k=k)


def test_bad_method():
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    with pytest.raises(ValueError, match="Expected method"):
        hessian_eigenvalues(loss, params, method="arnoldi")


def test_power_with_k_above_one():
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    with pytest.raises(ValueError, match="Expected k=1 with method='power'"):
        hessian_eigenvalues(loss, params, k=2, method="power")


def test_no_parameters():
    loss, _ = quadratic_loss(quadratic_matrix(EIGENVALUES))
    with pytest.raises(ValueError, match="Expected at least one parameter"):
        hessian_eigenvalues(loss, [])
    with pytest.raises(ValueError, match="Expected at least one parameter"):
        hessian_trace(loss, [])


def test_loss_independent_of_the_parameters():
    loss, _ = quadratic_loss(quadratic_matrix(EIGENVALUES))
    other = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="Expected the loss to depend on the parameters"):
        hessian_eigenvalues(loss, [other])


def test_no_batches():
    loss, params = quadratic_loss(quadratic_matrix(EIGENVALUES))
    with pytest.raises(ValueError, match="Expected at least one batch"):
        sharpness(lambda b: loss, params, [])
    _, critic, model, _ = tiny_gan()
    with pytest.raises(ValueError, match="Expected at least one batch"):
        generator_sharpness(FGANLoss("gan", critic), model, guide, [])
