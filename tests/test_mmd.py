"""MMDLoss: values and gradients against mmd2 on the traced samples (with and without a feature
critic), the validity matrix through SVI.step, a 1-D fit, and every ValueError branch."""


import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam, ClippedAdam

from bayesgan.infer import MMDLoss
from bayesgan.kernels import PAPER_INVERSE_BANDWIDTHS, RBFMixture, mmd2
from bayesgan.models import GeneratorModel, prior_guide
from helpers import check_valid_steps, scale_location_model

pytestmark = pytest.mark.usefixtures("float64", "one_thread")




def features(dim=2, width=8, out=3):
    return torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(), torch.nn.Linear(width, out))


def fixed_latent_setup(n=10):
    G = torch.nn.Linear(2, 2)
    z, x = torch.randn(n, 2), torch.randn(n, 2) + 1.0
    model = poutine.condition(GeneratorModel(G, latent_dim=2), data={"z": z})
    return G, z, x, model


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_without_critic_the_generator_minimizes_mmd2(estimator):
    G, z, x, model = fixed_latent_setup()
    kernel = RBFMixture([1.0, 0.1])
    loss = MMDLoss(kernel, estimator=estimator)
    critic_loss, generator_loss = loss.loss_and_grads(model, prior_guide, x)
    fake = G(z)
    want = mmd2(x, fake, kernel, estimator=estimator)
    assert critic_loss == 0.0
    assert generator_loss == pytest.approx(want.item(), rel=1e-13)
    assert loss.last["mmd2"] == loss.last["divergence"] == pytest.approx(want.item(), rel=1e-13)
    for p, g in zip(G.parameters(), torch.autograd.grad(want, list(G.parameters()))):
        assert torch.allclose(p.grad, g, rtol=1e-12)
    assert not any(k.startswith("critic") for k in pyro.get_param_store().keys())


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_with_a_critic_the_players_get_disjoint_gradients(estimator):
    """MMD-GAN: L_D = -MMD^2(phi(x), phi(G(z)).detach()), L_G = MMD^2(phi(x).detach(), phi(G(z)))
    through phi with its weights frozen."""
    G, z, x, model = fixed_latent_setup()
    phi, kernel = features(), RBFMixture([0.5])
    loss = MMDLoss(kernel, estimator=estimator, critic=phi)
    critic_loss, generator_loss = loss.loss_and_grads(model, prior_guide, x)
    fake = G(z)
    critic_objective = -mmd2(phi(x), phi(fake.detach()), kernel, estimator=estimator)
    generator_objective = mmd2(phi(x).detach(), phi(fake), kernel, estimator=estimator)
    assert critic_loss == pytest.approx(critic_objective.item(), rel=1e-13)
    assert generator_loss == pytest.approx(generator_objective.item(), rel=1e-13)
    assert loss.last["mmd2"] == pytest.approx(-critic_objective.item(), rel=1e-13)
    want_c = torch.autograd.grad(critic_objective, list(phi.parameters()))
    want_g = torch.autograd.grad(generator_objective, list(G.parameters()))
    for p, g in zip(phi.parameters(), want_c):
        assert torch.allclose(p.grad, g, rtol=1e-12, atol=1e-15)
    for p, g in zip(G.parameters(), want_g):
        assert torch.allclose(p.grad, g, rtol=1e-12, atol=1e-15)
    assert "critic$$$0.weight" in pyro.get_param_store().keys()


def test_defaults_and_repr():
    loss = MMDLoss()
    assert loss.estimator == "biased"  # the paper's code: the V-statistic
    assert loss.kernel.inverse_bandwidths == PAPER_INVERSE_BANDWIDTHS
    assert loss.critic is None and loss.critic_steps == 1 and loss.penalty is None
    assert repr(MMDLoss(RBFMixture([1.0]), estimator="unbiased")) == (
        "MMDLoss(kernel=RBFMixture((1.0,)), estimator='unbiased', critic=None)"
    )


def test_loss_at_identical_samples():
    """Fakes equal to the data: the biased MMD^2 is exactly 0; the unbiased one is
    2 mean_{i != j} k - 2 mean_{i, j} k = (2/n) (mean_{i != j} k(x_i, x_j) - k(0)) < 0."""
    x = torch.randn(6, 2)

    def model(data):
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", dist.Delta(x, event_dim=1), obs=data)

    kernel = RBFMixture([1.0])
    assert MMDLoss(kernel).loss(model, prior_guide, x)[1] == pytest.approx(0.0, abs=1e-14)
    unbiased = MMDLoss(kernel, estimator="unbiased").loss(model, prior_guide, x)[1]
    kxx = kernel(x, x)
    off = (kxx.sum() - kxx.trace()) / 30
    assert unbiased == pytest.approx((2 * off - 2 * kxx.mean()).item(), rel=1e-12)
    assert unbiased == pytest.approx((2 / 6 * (off - 1.0)).item(), rel=1e-12)
    assert unbiased < 0


# -- validity matrix ---------------------------------------------------------------------------
CASES = [
    (False, "biased", 1),
    (False, "unbiased", 1),
    (True, "biased", 1),
    (True, "unbiased", 1),
    (True, "biased", 3),
    (True, "unbiased", 3),
]


@pytest.mark.parametrize("with_critic, estimator, critic_steps", CASES)
def test_valid_models(with_critic, estimator, critic_steps):
    G = torch.nn.Linear(2, 2)
    phi = features() if with_critic else None
    model = GeneratorModel(G, latent_dim=2)
    loss = MMDLoss(RBFMixture([1.0, 0.1]), estimator=estimator, critic=phi, critic_steps=critic_steps)
    svi = SVI(model, prior_guide, Adam({"lr": 1e-2}), loss)
    x = torch.randn(16, 2) + 1.0
    results = check_valid_steps(svi, loss, model, prior_guide, G, phi, x, critic_steps)
    if not with_critic:
        assert all(result[0] == 0.0 for result in results)


# -- a 1-D fit ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_fits_a_gaussian():
    """Fit x = mu + s z to N(3, 0.5^2) with the default MMDLoss (the paper's RBF mixture, biased
    estimate): |mu - 3| < 0.05 and |s - 0.5| / 0.5 < 10%.

    The paper's inverse bandwidths need no rescaling here: lambda = 1 and 0.5 (length scales
    0.7-1) resolve s = 0.5, and the small ones pull mu from 0 to 3. Settings (measured, 1
    thread, ~1-2 s): batch 128, 300 steps, ClippedAdam lr 0.05 decayed geometrically to 0.005,
    betas (0.5, 0.999); the fitted values are the average of the last 50 iterates. Over 8 seeds:
    |mu - 3| <= 0.013, s in [0.491, 0.504] (the last iterate alone, 6 seeds: |mu - 3| <= 0.028,
    s within 2%). Shorter runs stop on the way (200 steps: mu ~ 2.87, s ~ 0.78; s first grows
    to ~1.7 while mu travels), and so does a faster decay (to 0.0005 in 300 steps).
    """
    pyro.set_rng_seed(0)
    steps = 300
    optim = ClippedAdam({"lr": 0.05, "betas": (0.5, 0.999), "lrd": 0.1 ** (1 / steps)})
    loss = MMDLoss()
    svi = SVI(scale_location_model, prior_guide, optim, loss)
    path = []
    for _ in range(steps):
        svi.step(3.0 + 0.5 * torch.randn(128, 1))
        path.append((pyro.param("mu").item(), abs(pyro.param("s").item())))
    mu = sum(p[0] for p in path[-50:]) / 50
    s = sum(p[1] for p in path[-50:]) / 50
    assert abs(mu - 3.0) < 0.05
    assert abs(s - 0.5) / 0.5 < 0.10


# -- ValueError branches -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MMDLoss(estimator="v-statistic"), "estimator 'biased' or 'unbiased'"),
        (lambda: MMDLoss(critic_steps=3), "critic_steps=1 without a critic"),
        (lambda: MMDLoss(critic=features(), critic_steps=0), "critic_steps to be an int >= 1"),
        (lambda: MMDLoss(critic=lambda x: x), "torch.nn.Module"),
        (lambda: MMDLoss(generator_penalty="samples"), "generator_penalty to be callable"),
    ],
)
def test_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
