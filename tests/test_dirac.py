r"""The Dirac-GAN (Mescheder, Geiger & Nowozin, ICML 2018; benchmarks.md section 6) built from the
library's own losses and penalties and run through ``pyro.infer.SVI`` with plain SGD.

Data p_D = delta_0, generator p_theta = delta_theta (``pyro.param("theta")`` behind a ``Delta``
observation), critic D(x) = psi x (``torch.nn.Linear(1, 1, bias=False)``).

Sign convention. The paper's objective is L(theta, psi_p) = f(psi_p theta) + f(0) with
f(t) = -log(1 + e^-t) = -softplus(-t); D maximizes L, G minimizes it. Our GAN critic loss with
V(x) = psi x is L_D = E_P softplus(-V) + E_Q softplus(V) = log 2 + softplus(psi theta), and the
saturating generator loss is L_G = -E_Q softplus(V) = -softplus(psi theta). With
psi = -psi_p, f(psi_p theta) = -softplus(psi theta), so L = -L_D exactly and L_G = L + log 2:
the critic minimizing L_D maximizes L and the generator minimizing L_G minimizes L. So
**psi_ours = -psi_paper** with the saturating objective; the same holds for the WGAN, whose
critic maximizes E_P[D] - E_Q[D] = -psi theta while the paper's maximizes psi_p theta. The
paper's start (theta, psi_p) = (1, 1) is critic weight -1 here. The tests below check this
mapping by running the paper's update equations next to SVI and comparing every iterate.

SVI computes both players' gradients at the same point and steps both: simultaneous gradient
descent (SimGD), the first column of benchmarks.md's table.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import SGD

from bayesgan.infer import FGANLoss, WassersteinLoss, WeightClipping
from bayesgan.penalties import R1

pytestmark = pytest.mark.usefixtures("float64", "one_thread")

H = 0.2  # the step size of the authors' notebook
STEPS = 500


def dirac_model(offsets):
    """fake_i = theta + offsets_i; the data batch (x) is observed at the same site."""

    def model(x):
        theta = pyro.param("theta", lambda: torch.ones(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Delta(theta + offsets, event_dim=1), obs=x)

    return model


def guide(x):
    pass


def make_critic(psi_paper=1.0):
    critic = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        critic.weight.fill_(-psi_paper)
    return critic


def run(loss, data, offsets, steps=STEPS):
    """SVI with plain SGD(lr = h); returns the iterates (theta, psi_paper), start included."""
    svi = SVI(dirac_model(offsets), guide, SGD({"lr": H}), loss)
    path = [(1.0, -loss.critic.weight.item())]
    for _ in range(steps):
        svi.step(data)
        if loss.constraint is not None:
            loss.constraint(loss.critic)  # the weights the next step will use (see WeightClipping)
        path.append((pyro.param("theta").item(), -loss.critic.weight.item()))
    return path


def norm(point):
    return math.hypot(*point)


# -- the paper's equations, for comparison ---------------------------------------------------
def f_prime(t):
    """f'(t) = sigmoid(-t) for f(t) = -log(1 + e^-t)."""
    return 1.0 / (1.0 + math.exp(t))


def paper_path(field, steps=STEPS, clip=None):
    """Simultaneous steps (theta, psi) += h v(theta, psi) from (1, 1), psi clipped after each."""
    theta, psi = 1.0, 1.0
    path = [(theta, psi)]
    for _ in range(steps):
        v1, v2 = field(theta, psi)
        theta, psi = theta + H * v1, psi + H * v2
        if clip is not None:
            psi = max(-clip, min(clip, psi))
        path.append((theta, psi))
    return path


def gan_field(gamma=0.0):
    # benchmarks.md 6.1: v = (-psi f'(psi theta), theta f'(psi theta)); R1 adds -gamma psi to v2.
    return lambda t, p: (-p * f_prime(p * t), t * f_prime(p * t) - gamma * p)


def wgan_field(t, p):
    return -p, t


def noise_field(noise):
    """L = E f(psi (theta + e)) + E f(-psi e) over the fixed noise set (data x = e, fakes
    theta + e): v1 = -dL/dtheta, v2 = dL/dpsi."""
    n = len(noise)

    def field(t, p):
        v1 = -sum(p * f_prime(p * (t + e)) for e in noise) / n
        v2 = sum((t + e) * f_prime(p * (t + e)) - e * f_prime(-p * e) for e in noise) / n
        return v1, v2

    return field


def quantile_noise(sigma, n):
    """sigma * Phi^-1((i - 1/2) / n), i = 1..n: a fixed, exactly symmetric N(0, sigma^2) sample."""
    u = (torch.arange(1, n + 1, dtype=torch.float64) - 0.5) / n
    return sigma * torch.special.ndtri(u)[:, None]


def assert_same_path(ours, paper, atol):
    assert len(ours) == len(paper)
    for k, (a, b) in enumerate(zip(ours, paper)):
        assert a == pytest.approx(b, abs=atol), k


def one_point():
    """The data point 0 and no offset: a plate of size 1."""
    return torch.zeros(1, 1), torch.zeros(1, 1)


# -- exact identities --------------------------------------------------------------------------
def test_one_step_is_the_paper_field_with_psi_flipped():
    """From (theta, psi_p) = (0.8, -0.6): one SVI step moves theta by h psi_p f'(psi_p theta)
    downhill and psi_p by h theta f'(psi_p theta) uphill; the critic's weight is -psi_p."""
    theta0, psi0 = 0.8, -0.6
    critic = make_critic(psi0)
    pyro.param("theta", torch.tensor([theta0]))
    loss = FGANLoss("gan", critic, generator_objective="saturating")
    svi = SVI(dirac_model(torch.zeros(1, 1)), guide, SGD({"lr": H}), loss)
    critic_loss, generator_loss = svi.step(torch.zeros(1, 1))
    v1, v2 = gan_field()(theta0, psi0)
    assert pyro.param("theta").item() == pytest.approx(theta0 + H * v1, rel=1e-14)
    assert -critic.weight.item() == pytest.approx(psi0 + H * v2, rel=1e-14)
    # L_D = -L and L_G = L + log 2, with L = f(psi_p theta) + f(0).
    f = lambda t: -math.log1p(math.exp(-t))  # noqa: E731
    L = f(psi0 * theta0) + f(0.0)
    assert critic_loss == pytest.approx(-L, rel=1e-14)
    assert generator_loss == pytest.approx(L + math.log(2), rel=1e-14)


def test_simultaneous_gd_grows_the_radius_by_the_exact_factor():
    """Unregularized GAN, SimGD: r_{k+1}^2 = r_k^2 (1 + h^2 f'(psi_k theta_k)^2), step by step."""
    loss = FGANLoss("gan", make_critic(), generator_objective="saturating")
    path = run(loss, *one_point(), steps=20)
    for (t0, p0), (t1, p1) in zip(path, path[1:]):
        want = (t0**2 + p0**2) * (1 + H**2 * f_prime(p0 * t0) ** 2)
        assert t1**2 + p1**2 == pytest.approx(want, rel=1e-12)
    radii = [norm(p) for p in path]
    assert all(b > a for a, b in zip(radii, radii[1:]))  # monotone growth


# -- 500 steps from (1, 1): benchmarks.md 6.2, SimGD column -------------------------------------
def test_gan_does_not_converge():
    # Table: final norm 3.097, growing monotonically.
    path = run(FGANLoss("gan", make_critic(), generator_objective="saturating"), *one_point())
    assert_same_path(path, paper_path(gan_field()), atol=1e-10)
    assert norm(path[-1]) == pytest.approx(3.097, abs=1e-3)
    assert norm(path[-1]) > 0.5


def test_wgan_with_weight_clipping_does_not_converge():
    # Table: WGAN, clip 1, one critic step: final norm ~1.00 (it orbits).
    loss = WassersteinLoss(make_critic(), penalty=None, constraint=WeightClipping(1.0), critic_steps=1)
    path = run(loss, *one_point())
    assert_same_path(path, paper_path(wgan_field, clip=1.0), atol=1e-10)
    assert norm(path[-1]) == pytest.approx(1.00, abs=0.01)
    assert min(norm(p) for p in path[-100:]) > 0.5


@pytest.mark.parametrize("gamma, table, bound", [(0.3, 2.6e-6, 1e-5), (1.0, 1e-21, 1e-10)])
def test_r1_converges(gamma, table, bound):
    """R1 = (gamma/2) E_P ||grad_x D||^2 = (gamma/2) psi^2. Table: 2.6e-6 (gamma = 0.3) and
    ~1e-21 (gamma = 1, critical damping); the paper's equations give 2.643e-6 and 9.53e-22."""
    loss = FGANLoss("gan", make_critic(), generator_objective="saturating", penalty=R1(gamma))
    path = run(loss, *one_point())
    paper = paper_path(gan_field(gamma))
    assert_same_path(path, paper, atol=1e-10)
    final = norm(path[-1])
    assert final == pytest.approx(norm(paper[-1]), rel=1e-6)  # also where atol=1e-10 is blind
    assert final < bound
    assert table / 2 < final < table * 2


def test_instance_noise_converges():
    """Instance noise sigma = 0.7 with common random numbers: one FIXED symmetric noise set
    e_i = sigma Phi^-1((i - 1/2)/n), n = 128, is used every step, as the data (x_i = e_i, a
    plate of size n) and as the fakes' noise (theta + e_i). Noise drawn afresh each step would
    only reach a Monte Carlo floor (about 3e-2 at n = 256, benchmarks.md 6.2); with the fixed
    set the equilibrium is exactly (0, 0). The quadrature value in the table is 5.7e-5; this
    set's slightly smaller variance (0.485 instead of 0.49) gives 6.5e-5."""
    noise = quantile_noise(0.7, 128)
    loss = FGANLoss("gan", make_critic(), generator_objective="saturating")
    path = run(loss, noise, noise)
    assert_same_path(path, paper_path(noise_field(noise.flatten().tolist())), atol=1e-10)
    final = norm(path[-1])
    assert final < 1e-3
    assert final == pytest.approx(6.5e-5, rel=0.05)


def test_unregularized_gan_keeps_orbiting_where_r1_decays():
    # The contrast the paper draws, on one plot: same start, same step, only the penalty differs.
    plain = run(FGANLoss("gan", make_critic(), generator_objective="saturating"), *one_point(), steps=100)
    pyro.clear_param_store()
    regularized = FGANLoss("gan", make_critic(), generator_objective="saturating", penalty=R1(1.0))
    reg = run(regularized, *one_point(), steps=100)
    assert norm(plain[-1]) > norm(plain[0]) > 1.0
    assert norm(reg[-1]) < 1e-3
