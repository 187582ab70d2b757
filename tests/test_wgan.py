"""WassersteinLoss and WeightClipping: hand-derived values and gradients, the clipping contract,
the matrix of Lipschitz constraints x critic schedules through SVI.step, a trained critic's W1
estimate against the closed form, and a 1-D fit."""


import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam, ClippedAdam

from bayesgan.infer import WassersteinLoss, WeightClipping
from bayesgan.models import GeneratorModel, prior_guide
from bayesgan.penalties import GradientPenalty, WGANDiv
from helpers import check_valid_steps, scale_location_model

pytestmark = pytest.mark.usefixtures("float64", "one_thread")

W1_N01_N12 = 1.166631  # W1(N(0, 1), N(1, 2^2)), benchmarks.md 4.2




def mlp(dim=2, width=8, out=1):
    return torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(), torch.nn.Linear(width, out))


def guide(*args, **kwargs):
    pass


# -- hand-derived values -----------------------------------------------------------------------
def test_losses_and_gradients_with_a_linear_critic():
    """D(x) = w.x + c, fakes x = loc + z: L_D = E_Q[D] - E_P[D] + lam (||w|| - 1)^2 (exact for a
    linear critic), L_G = -E_Q[D]; dL_D/dw = mean(x_f) - mean(x_r) + 2 lam (||w|| - 1) w/||w||,
    dL_D/dc = 0, dL_G/dloc = -w."""
    w, c, lam = torch.tensor([0.6, -1.7]), 0.4, 3.0
    critic = torch.nn.Linear(2, 1)
    with torch.no_grad():
        critic.weight.copy_(w[None])
        critic.bias.fill_(c)
    z = torch.tensor([[0.1, 0.2], [-1.0, 0.5], [0.3, 0.3]])
    real = torch.tensor([[1.0, 1.0], [2.0, -1.0], [0.0, 0.5]])

    def model(x):
        loc = pyro.param("loc", lambda: torch.tensor([0.5, 0.25]))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)

    loss = WassersteinLoss(critic, penalty=GradientPenalty(lam), critic_steps=1)
    critic_loss, generator_loss = loss.loss_and_grads(model, guide, real)
    fake = torch.tensor([0.5, 0.25]) + z
    e_real, e_fake = (real @ w + c).mean().item(), (fake @ w + c).mean().item()
    n = w.norm()
    assert critic_loss == pytest.approx(e_fake - e_real + lam * (n.item() - 1) ** 2, rel=1e-13)
    assert generator_loss == pytest.approx(-e_fake, rel=1e-13)
    assert loss.last["wasserstein"] == loss.last["divergence"] == pytest.approx(e_real - e_fake, rel=1e-13)
    assert loss.last["critic_real"] == pytest.approx(e_real, rel=1e-13)
    assert loss.last["critic_fake"] == pytest.approx(e_fake, rel=1e-13)
    assert loss.last["penalty"] == pytest.approx(lam * (n.item() - 1) ** 2, rel=1e-13)
    want_dw = fake.mean(0) - real.mean(0) + 2 * lam * (n - 1) * w / n
    assert torch.allclose(critic.weight.grad[0], want_dw, rtol=1e-12)
    assert critic.bias.grad.item() == pytest.approx(0.0, abs=1e-15)
    assert torch.allclose(pyro.param("loc").grad, -w, rtol=1e-13)


@pytest.mark.parametrize("critic", [None, lambda x: x, "critic"])
def test_critic_must_be_a_module(critic):
    # Regression: None used to be accepted here and failed at the first step with
    # "AssertionError: module has no parameters".
    with pytest.raises(ValueError, match="torch.nn.Module"):
        WassersteinLoss(critic)


@pytest.mark.parametrize("critic_steps", [0, 2.5])
def test_critic_steps_must_be_a_positive_int(critic_steps):
    with pytest.raises(ValueError, match="critic_steps to be an int >= 1"):
        WassersteinLoss(torch.nn.Linear(1, 1), critic_steps=critic_steps)


def test_defaults_are_wgan_gp():
    loss = WassersteinLoss(torch.nn.Linear(1, 1))
    assert loss.critic_steps == 5
    assert isinstance(loss.penalty, GradientPenalty)
    assert (loss.penalty.weight, loss.penalty.center, loss.penalty.one_sided) == (10.0, 1.0, False)
    assert loss.constraint is None
    assert WassersteinLoss(torch.nn.Linear(1, 1), penalty=None).penalty is None


# -- WeightClipping ----------------------------------------------------------------------------
class Watched(torch.nn.Module):
    """A critic that records the largest absolute weight each time it is evaluated."""

    def __init__(self):
        super().__init__()
        self.net = mlp(2, 8)
        self.seen = []

    def forward(self, x):
        self.seen.append(max(p.detach().abs().max().item() for p in self.parameters()))
        return self.net(x)


@pytest.mark.parametrize("penalty", [None, GradientPenalty(1.0)])
def test_weight_clipping_holds_whenever_the_critic_is_evaluated(penalty):
    clip = 0.05
    critic = Watched()
    with torch.no_grad():
        for p in critic.parameters():
            p.uniform_(-1.0, 1.0)  # far outside the box
    loss = WassersteinLoss(critic, penalty=penalty, constraint=WeightClipping(clip), critic_steps=2)
    svi = SVI(GeneratorModel(torch.nn.Linear(2, 2), latent_dim=2), prior_guide, Adam({"lr": 0.1}), loss)
    for _ in range(4):
        svi.step(torch.randn(16, 2))
    loss.loss(GeneratorModel(torch.nn.Linear(2, 2), latent_dim=2), prior_guide, torch.randn(16, 2))
    assert len(critic.seen) >= 4 * 3
    assert max(critic.seen) <= clip
    # The optimizer's step after the last evaluation leaves the weights unprojected (lr 0.1 is
    # larger than the box); the constraint projects them again, as the docstring says.
    svi.step(torch.randn(16, 2))
    assert max(p.abs().max().item() for p in critic.parameters()) > clip
    WeightClipping(clip)(critic)
    assert max(p.abs().max().item() for p in critic.parameters()) <= clip


def test_weight_clipping_is_a_projection():
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.002, -3.0], [0.01, 0.0, 0.009]]))
        layer.bias.copy_(torch.tensor([-0.02, 0.003]))
    WeightClipping(0.01)(layer)
    assert torch.equal(layer.weight, torch.tensor([[0.01, -0.002, -0.01], [0.01, 0.0, 0.009]]))
    assert torch.equal(layer.bias, torch.tensor([-0.01, 0.003]))
    assert repr(WeightClipping()) == "WeightClipping(0.01)"


# -- validity matrix ---------------------------------------------------------------------------
CONSTRAINTS = {
    "gp": dict(penalty=GradientPenalty(10.0)),
    "one_sided_gp": dict(penalty=GradientPenalty(10.0, one_sided=True)),
    "wgan_div": dict(penalty=WGANDiv()),
    "clipping": dict(penalty=None, constraint=WeightClipping(0.5)),
}


@pytest.mark.parametrize("critic_steps", [1, 3])
@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_valid_models(name, critic_steps):
    """svi.step returns a 2-tuple of finite floats; loss.loss gives the same numbers under the
    same seed; the generator is bit-identical on critic-only steps (Adam would move it on an
    explicit zero gradient), and the critic moves every step."""
    G, critic = torch.nn.Linear(2, 2), mlp()
    model = GeneratorModel(G, latent_dim=2)
    loss = WassersteinLoss(critic, critic_steps=critic_steps, **CONSTRAINTS[name])
    svi = SVI(model, prior_guide, Adam({"lr": 1e-2}), loss)
    x = torch.randn(16, 2) + 1.0
    check_valid_steps(svi, loss, model, prior_guide, G, critic, x, critic_steps)
    assert loss.step == 2 * critic_steps


# -- a trained critic estimates W1 --------------------------------------------------------------
def fixed_generator(x):
    """Q = N(1, 2^2) as x = 1 + 2 z: no trainable generator parameters, only the critic learns."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        pyro.sample("x", dist.Delta(1.0 + 2.0 * z, event_dim=1), obs=x)


@pytest.mark.slow
def test_critic_estimates_w1_between_gaussians():
    """W1(N(0, 1), N(1, 2^2)) = 1.166631 within 5%.

    The penalty is the one-sided GP with lambda = 100: it penalizes only slopes above 1, and the
    optimal 1-D critic has slope +-1 everywhere, so it is not pulled below the constraint, while
    the large lambda keeps the slope from exceeding 1. The default two-sided penalty at
    lambda = 10 is biased low (0.92 in benchmarks.md 4.2) and would fail this test.

    Settings (measured, 1 thread, ~1.5 s): ReLU 1-32-32-1 critic, Adam lr 3e-3, betas
    (0.5, 0.9), batch 256, 300 steps. Over 12 seeds the mean of last["wasserstein"] over the
    last 100 steps was 1.144-1.172 (within 2%), the asserted estimate. The last critic alone,
    evaluated as E_P[D] - E_Q[D] on 2 x 10^5 fresh points, is noisier: 1.102-1.194 (with 500
    steps at lr 2e-3, 1.128-1.190 over 14 seeds); it is checked within 10% as a sanity check.
    """
    pyro.set_rng_seed(0)
    critic = torch.nn.Sequential(
        torch.nn.Linear(1, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
    )
    loss = WassersteinLoss(critic, penalty=GradientPenalty(100.0, one_sided=True), critic_steps=1)
    svi = SVI(fixed_generator, guide, Adam({"lr": 3e-3, "betas": (0.5, 0.9)}), loss)
    estimates = []
    for _ in range(300):
        svi.step(torch.randn(256, 1))
        estimates.append(loss.last["wasserstein"])
    running = sum(estimates[-100:]) / 100
    assert running == pytest.approx(W1_N01_N12, rel=0.05)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        p = torch.randn(200_000, 1, generator=g)
        q = 1.0 + 2.0 * torch.randn(200_000, 1, generator=g)
        fresh = (critic(p).mean() - critic(q).mean()).item()
    assert fresh == pytest.approx(W1_N01_N12, rel=0.10)


# -- a 1-D fit ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_fits_a_gaussian():
    """Fit x = mu + s z to N(3, 0.5^2): |mu - 3| < 0.05 and |s - 0.5| / 0.5 < 10%.

    Settings (measured, 1 thread, ~4 s): LeakyReLU(0.2) 1-32-32-1 critic, one-sided GP
    lambda = 10, one critic step per generator step, batch 256, 800 steps, ClippedAdam with
    betas (0.5, 0.9), lr 0.03 for the generator and 0.02 for the critic, both decayed
    geometrically to a tenth; the fitted values are the average of the last 100 iterates. Over 8
    seeds: |mu - 3| <= 0.014, s in [0.480, 0.512]. (600 steps failed once in 8 with s = 0.33.)

    Why one-sided: in 1-D the critic's slope can change sign only by passing through 0, where
    the two-sided penalty costs lambda. With lambda = 10 a critic that starts (or ends up) with
    the wrong sign stays there, and the generator runs away from the data at full speed
    (measured with the two-sided penalty, generator lr 0.05, 400 steps: mu -> -7.7, -7.7 and
    +7.8 for 3 of 3 seeds; the data are at 3).
    """
    pyro.set_rng_seed(0)
    critic = torch.nn.Sequential(
        torch.nn.Linear(1, 32), torch.nn.LeakyReLU(0.2), torch.nn.Linear(32, 32), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(32, 1),
    )
    loss = WassersteinLoss(critic, penalty=GradientPenalty(10.0, one_sided=True), critic_steps=1)
    steps = 800
    decay = 0.1 ** (1 / steps)
    optim = ClippedAdam(lambda name: {
        "lr": 0.03 if name in ("mu", "s") else 0.02, "betas": (0.5, 0.9), "lrd": decay,
    })
    svi = SVI(scale_location_model, guide, optim, loss)
    path = []
    for _ in range(steps):
        svi.step(3.0 + 0.5 * torch.randn(256, 1))
        path.append((pyro.param("mu").item(), abs(pyro.param("s").item())))
    mu = sum(p[0] for p in path[-100:]) / 100
    s = sum(p[1] for p in path[-100:]) / 100
    assert abs(mu - 3.0) < 0.05
    assert abs(s - 0.5) / 0.5 < 0.10
