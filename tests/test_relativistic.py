"""RelativisticLoss: hand-checked losses on fixed critic outputs, the generator's dependence on the
real batch (with its hand-derived gradient), the log 2 equilibrium, and validity through SVI."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from bayesgan.infer import RelativisticLoss
from bayesgan.models import GeneratorModel, prior_guide
from bayesgan.penalties import R1, GradientPenalty
from helpers import check_valid_steps

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def softplus(v):
    return math.log1p(math.exp(v))


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def identity_critic(w=1.0, c=0.0):
    """C(x) = w x + c on 1-D points: with w = 1, c = 0 the critic outputs are the points."""
    critic = torch.nn.Linear(1, 1)
    with torch.no_grad():
        critic.weight.fill_(w)
        critic.bias.fill_(c)
    return critic


def shift_model(z):
    """fake_i = theta + z_i."""

    def model(x):
        theta = pyro.param("theta", lambda: torch.tensor([0.3]))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Delta(theta + z, event_dim=1), obs=x)

    return model


def guide(x):
    pass


Z = [-0.5, 0.0, 1.25, 2.0]
REAL = [1.0, -2.0, 0.5, 3.0]


def column(values):
    return torch.tensor(values, dtype=torch.float64)[:, None]


def test_losses_on_fixed_critic_outputs():
    """With C_r and C_f the outputs on real and fake points:
    L_D = (mean_i softplus(-(C_r,i - mean C_f)) + mean_j softplus(C_f,j - mean C_r)) / 2,
    L_G = (mean_i softplus(C_r,i - mean C_f) + mean_j softplus(-(C_f,j - mean C_r))) / 2."""
    loss = RelativisticLoss(identity_critic())
    critic_loss, generator_loss = loss.loss(shift_model(column(Z)), guide, column(REAL))
    cr, cf = REAL, [0.3 + z for z in Z]
    mr, mf = mean(cr), mean(cf)
    want_d = 0.5 * (mean(softplus(-(r - mf)) for r in cr) + mean(softplus(f - mr) for f in cf))
    want_g = 0.5 * (mean(softplus(r - mf) for r in cr) + mean(softplus(-(f - mr)) for f in cf))
    assert critic_loss == pytest.approx(want_d, rel=1e-14)
    assert generator_loss == pytest.approx(want_g, rel=1e-14)
    assert loss.last["critic_real"] == pytest.approx(mr, rel=1e-14)
    assert loss.last["critic_fake"] == pytest.approx(mf, rel=1e-14)
    assert loss.last["divergence"] == pytest.approx(math.log(2) - want_d, rel=1e-13)
    assert loss.last["penalty"] == 0.0


def test_generator_gradient_depends_on_the_real_batch():
    """C(x) = w x + c and fakes theta + z_j, so dC_f,j/dtheta = w and
    dL_G/dtheta = -(w/2) (mean_i sigmoid(C_r,i - mean C_f) + mean_j sigmoid(mean C_r - C_f,j)).
    Two real batches with the same fakes give two different gradients (unlike the standard GAN,
    whose generator loss sees only the fakes)."""
    w, c = 0.7, -0.1
    grads = []
    for real in (REAL, [r + 1.5 for r in REAL]):
        pyro.clear_param_store()
        loss = RelativisticLoss(identity_critic(w, c))
        loss.loss_and_grads(shift_model(column(Z)), guide, column(real))
        cr = [w * r + c for r in real]
        cf = [w * (0.3 + z) + c for z in Z]
        mr, mf = mean(cr), mean(cf)
        want = -0.5 * w * (mean(sigmoid(r - mf) for r in cr) + mean(sigmoid(mr - f) for f in cf))
        grad = pyro.param("theta").grad.item()
        assert grad == pytest.approx(want, rel=1e-13)
        grads.append(grad)
    assert abs(grads[0] - grads[1]) > 0.05


def test_critic_gradient_is_hand_derived():
    """dL_D/dw with C = w x + c: the bias cancels (relativistic: only differences enter);
    dL_D/dw = (1/2)[mean_i -sigmoid(-(C_r,i - mC_f)) (x_r,i - mean x_f)
                   + mean_j sigmoid(C_f,j - mC_r) (x_f,j - mean x_r)]."""
    w, c = 0.7, -0.1
    critic = identity_critic(w, c)
    loss = RelativisticLoss(critic)
    loss.loss_and_grads(shift_model(column(Z)), guide, column(REAL))
    xf = [0.3 + z for z in Z]
    cr, cf = [w * r + c for r in REAL], [w * x + c for x in xf]
    mr, mf, mxr, mxf = mean(cr), mean(cf), mean(REAL), mean(xf)
    dw = 0.5 * (mean(-sigmoid(-(r - mf)) * (x - mxf) for r, x in zip(cr, REAL))
                + mean(sigmoid(f - mr) * (x - mxr) for f, x in zip(cf, xf)))
    assert critic.weight.grad.item() == pytest.approx(dw, rel=1e-13)
    assert critic.bias.grad.item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("constant", [0.0, 2.5, -7.0])
def test_constant_critic_gives_log_two(constant):
    """A critic that cannot tell real from fake (any constant output): every difference is 0, so
    both losses are softplus(0) = log 2 and the divergence read-out is 0."""
    loss = RelativisticLoss(identity_critic(0.0, constant))
    critic_loss, generator_loss = loss.loss(shift_model(column(Z)), guide, column(REAL))
    assert critic_loss == pytest.approx(math.log(2), rel=1e-15)
    assert generator_loss == pytest.approx(math.log(2), rel=1e-15)
    assert loss.last["divergence"] == pytest.approx(0.0, abs=1e-15)


def test_defaults_and_repr():
    loss = RelativisticLoss(torch.nn.Linear(2, 1))
    assert loss.critic_steps == 1 and loss.penalty is None
    assert repr(RelativisticLoss(torch.nn.Linear(2, 1), penalty=R1(1.0), critic_steps=2)) == (
        "RelativisticLoss(penalty=R1(1.0), critic_steps=2)"
    )


@pytest.mark.parametrize("critic", [None, lambda x: x])
def test_critic_must_be_a_module(critic):
    # Regression: None used to be accepted and failed at the first step.
    with pytest.raises(ValueError, match="torch.nn.Module"):
        RelativisticLoss(critic)


def test_svi_moves_the_generator_towards_the_data():
    """A short run through SVI: the location of x = loc + z moves from 0 towards data at 2."""

    def model(x):
        loc = pyro.param("loc", lambda: torch.zeros(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            pyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)

    critic = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    loss = RelativisticLoss(critic)
    svi = SVI(model, guide, Adam({"lr": 2e-2}), loss)
    for _ in range(100):
        result = svi.step(torch.randn(64, 1) + 2.0)
        assert all(math.isfinite(v) for v in result)
    assert 1.0 < pyro.param("loc").item() < 3.0


# -- validity matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("critic_steps", [1, 3])
@pytest.mark.parametrize("penalty", [None, R1(1.0), GradientPenalty(1.0)], ids=["none", "r1", "gp"])
def test_valid_models(penalty, critic_steps):
    G = torch.nn.Linear(2, 2)
    critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = GeneratorModel(G, latent_dim=2)
    loss = RelativisticLoss(critic, penalty=penalty, critic_steps=critic_steps)
    svi = SVI(model, prior_guide, Adam({"lr": 1e-2}), loss)
    x = torch.randn(16, 2) + 1.0
    check_valid_steps(svi, loss, model, prior_guide, G, critic, x, critic_steps)
