"""Critic penalties against their closed forms on linear and quadratic critics (values and
gradients with respect to the critic's weights, i.e. double back-propagation), Lazy and sums,
the generator gradient regularizer against hand-derived updates, and every ValueError branch."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayesgan.infer import FGANLoss, MMDLoss, WassersteinLoss, WeightClipping
from bayesgan.kernels import RBFMixture
from bayesgan.penalties import R1, R2, GeneratorGradientPenalty, GradientPenalty, Lazy, Penalty, WGANDiv

pytestmark = pytest.mark.usefixtures("float64", "one_thread")


def linear(w, bias=0.0):
    """D(x) = w.x + bias."""
    critic = torch.nn.Linear(len(w), 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([w]))
        critic.bias.fill_(bias)
    return critic


class Quadratic(torch.nn.Module):
    """D(x) = x^T A x / 2 + b.x, so grad_x D = S x + b with S = (A + A^T) / 2."""

    def __init__(self, A, b):
        super().__init__()
        self.A = torch.nn.Parameter(torch.as_tensor(A).clone())
        self.b = torch.nn.Parameter(torch.as_tensor(b).clone())

    @property
    def S(self):
        return 0.5 * (self.A + self.A.T)

    def forward(self, x):
        return 0.5 * ((x @ self.A) * x).sum(-1) + x @ self.b


A0 = [[1.0, 0.3], [-0.2, -0.5]]  # not symmetric on purpose
B0 = [0.2, -0.7]


def points(n=7, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) + shift


def grads(value, module):
    """d value / d params, with an explicit zero for a parameter the value does not use."""
    params = list(module.parameters())
    found = torch.autograd.grad(value, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, found)]


# -- GradientPenalty ---------------------------------------------------------------------------
@pytest.mark.parametrize("w", [[3.0, 4.0], [0.36, -0.48], [-1.2, 0.5]])
@pytest.mark.parametrize("one_sided", [False, True])
def test_gradient_penalty_of_a_linear_critic_is_exact_for_any_interpolates(w, one_sided):
    """grad D = w everywhere, so the penalty is weight * (||w|| - 1)^2 (one-sided:
    weight * max(0, ||w|| - 1)^2) whatever the interpolation draws are."""
    critic, weight = linear(w, bias=0.3), 2.5
    norm = torch.tensor(w).norm().item()
    gap = max(norm - 1.0, 0.0) if one_sided else norm - 1.0
    real, fake = points(), points(shift=2.0, seed=1)
    values = []
    for seed in range(4):
        torch.manual_seed(seed)
        values.append(GradientPenalty(weight, one_sided=one_sided)(critic, real, fake).item())
    assert values == pytest.approx([weight * gap**2] * 4, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("one_sided", [False, True])
def test_gradient_penalty_uses_the_interpolates(one_sided):
    """A quadratic critic's gradient varies with x; with the draws eps ~ U[0, 1] replayed, the
    penalty is weight * mean (||S x_hat + b|| - 1)^2 at x_hat = eps x + (1 - eps) x_fake."""
    critic = Quadratic(A0, B0)
    real, fake = points(9), points(9, shift=1.5, seed=1)
    torch.manual_seed(7)
    value = GradientPenalty(3.0, one_sided=one_sided)(critic, real, fake)
    torch.manual_seed(7)
    eps = torch.rand(9, 1)
    x_hat = eps * real + (1 - eps) * fake
    gap = (x_hat @ critic.S.T + critic.b).norm(dim=1) - 1.0
    if one_sided:
        gap = gap.clamp(min=0)
    assert value.item() == pytest.approx(3.0 * gap.pow(2).mean().item(), rel=1e-12)
    if one_sided:
        assert 0 < int((gap == 0).sum()) < 9  # both branches of the clamp are used


@pytest.mark.parametrize("one_sided", [False, True])
@pytest.mark.parametrize("w", [[3.0, 4.0], [0.3, -0.4]])
def test_gradient_penalty_gradient_wrt_critic_weights(w, one_sided):
    """d/dw weight (||w|| - 1)^2 = 2 weight (||w|| - 1) w / ||w||; zero one-sided below 1;
    the bias gets none."""
    critic, weight = linear(w), 10.0
    w_t = torch.tensor(w)
    norm = w_t.norm()
    gap = (norm - 1).clamp(min=0) if one_sided else norm - 1
    dw, db = grads(GradientPenalty(weight, one_sided=one_sided)(critic, points(), points(seed=1)), critic)
    assert torch.allclose(dw[0], 2 * weight * gap * w_t / norm, rtol=1e-12, atol=1e-14)
    assert db.item() == 0.0


# -- R1 / R2 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, which", [(R1, "real"), (R2, "fake")])
def test_r1_r2_closed_form_and_weight_gradients(cls, which):
    """(gamma/2) mean ||S x + b||^2 on the real (R1) or fake (R2) points; with r = S x + b,
    d/db = gamma mean r and d/dA = sym(gamma mean r x^T)."""
    gamma = 0.8
    critic = Quadratic(A0, B0)
    real, fake = points(6), points(6, shift=-1.0, seed=3)
    x = real if which == "real" else fake
    r = x @ critic.S.T + critic.b
    value = cls(gamma)(critic, real, fake)
    assert value.item() == pytest.approx(0.5 * gamma * r.pow(2).sum(1).mean().item(), rel=1e-13)
    dA, db = grads(value, critic)
    G = gamma * (r.T @ x) / x.shape[0]
    assert torch.allclose(db, gamma * r.mean(0), rtol=1e-12)
    assert torch.allclose(dA, 0.5 * (G + G.T), rtol=1e-12)


def test_r1_of_a_linear_critic_is_half_gamma_squared_norm():
    # The Dirac-GAN's R1: D(x) = psi x gives (gamma / 2) psi^2 (benchmarks.md 6.1).
    critic = linear([-0.6], bias=4.0)
    assert R1(0.3)(critic, torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(0.5 * 0.3 * 0.36, rel=1e-14)


def test_r1_and_r2_detach_their_inputs():
    critic = Quadratic(A0, B0)
    real = points().requires_grad_(True)
    R1(1.0)(critic, real, real).backward()
    assert real.grad is None and critic.b.grad is not None


# -- WGAN-div ----------------------------------------------------------------------------------
@pytest.mark.parametrize("k, p", [(2.0, 6.0), (0.5, 2.0), (1.0, 1.5)])
def test_wgan_div_of_a_linear_critic(k, p):
    """(k/2)(||w||^p + ||w||^p) = k ||w||^p, with gradient k p ||w||^(p-2) w."""
    w = torch.tensor([0.9, -0.7])
    critic = linear(w.tolist(), bias=1.0)
    value = WGANDiv(k, p)(critic, points(), points(seed=2))
    norm = w.norm()
    assert value.item() == pytest.approx((0.5 * k * (norm**p + norm**p)).item(), rel=1e-13)
    dw, db = grads(value, critic)
    assert torch.allclose(dw[0], k * p * norm ** (p - 2) * w, rtol=1e-12)
    assert db.item() == 0.0


def test_wgan_div_of_a_quadratic_critic_averages_real_and_fake_separately():
    critic = Quadratic(A0, B0)
    real, fake = points(5), points(8, shift=2.0, seed=4)
    norms = [(x @ critic.S.T + critic.b).norm(dim=1) for x in (real, fake)]
    want = 0.5 * 2.0 * (norms[0].pow(6).mean() + norms[1].pow(6).mean())
    assert WGANDiv()(critic, real, fake).item() == pytest.approx(want.item(), rel=1e-12)


# -- Lazy and sums -----------------------------------------------------------------------------
class Counting(Penalty):
    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self, critic, real, fake):
        self.calls += 1
        return torch.tensor(self.value)


@pytest.mark.parametrize("every", [1, 3, 4])
def test_lazy_applies_every_k_calls_with_gain_k(every):
    inner = Counting(0.25)
    lazy = Lazy(inner, every=every)
    x = torch.zeros(2, 1)
    values = [lazy(None, x, x).item() for _ in range(3 * every + 1)]
    want = [every * 0.25 if i % every == 0 else 0.0 for i in range(3 * every + 1)]
    assert values == want
    assert inner.calls == 4  # the inner penalty is not even evaluated on the other calls
    assert repr(lazy).startswith("Lazy(") and f"every={every}" in repr(lazy)


def test_lazy_default_period_and_zero_dtype():
    lazy = Lazy(R1(1.0))
    assert lazy.every == 16
    x = torch.zeros(3, 2, dtype=torch.float32)
    critic = torch.nn.Linear(2, 1).float()
    lazy(critic, x, x)
    zero = lazy(critic, x, x)
    assert zero.dtype == torch.float32 and zero.item() == 0.0


def test_penalties_add_up():
    critic = Quadratic(A0, B0)
    real, fake = points(), points(shift=1.0, seed=5)
    total = R1(1.0) + R2(0.5) + WGANDiv()
    want = R1(1.0)(critic, real, fake) + R2(0.5)(critic, real, fake) + WGANDiv()(critic, real, fake)
    assert total(critic, real, fake).item() == pytest.approx(want.item(), rel=1e-13)
    assert repr(total) == "R1(1.0) + R2(0.5) + WGANDiv(k=2.0, p=6.0)"
    # Sums of sums keep working and a non-penalty does not add.
    assert isinstance(total + GradientPenalty(1.0), Penalty)
    with pytest.raises(TypeError):
        R1(1.0) + 3.0


def test_penalty_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Penalty()(None, None, None)


# -- penalties inside a loss: the critic's gradient -------------------------------------------
def test_r1_inside_wasserstein_loss_moves_only_the_critic():
    """The critic's gradient is that of E_Q[D] - E_P[D] + R1; the generator's is -E_Q[D]'s,
    untouched by the penalty (which sees detached fakes)."""
    critic = Quadratic(A0, B0)
    real, z = points(5), points(5, seed=8)

    def model(x):
        loc = pyro.param("loc", lambda: torch.tensor([0.5, -0.5]))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)

    loss = WassersteinLoss(critic, penalty=R1(2.0), critic_steps=1)
    loss.loss_and_grads(model, lambda x: None, real)
    fake = torch.tensor([0.5, -0.5]) + z
    reference = Quadratic(A0, B0)
    critic_loss = reference(fake).mean() - reference(real).mean() + R1(2.0)(reference, real, fake)
    for p, g in zip(critic.parameters(), grads(critic_loss, reference)):
        assert torch.allclose(p.grad, g, rtol=1e-12)
    loc = torch.tensor([0.5, -0.5], requires_grad=True)
    (want,) = torch.autograd.grad(-reference(loc + z).mean(), loc)
    assert torch.allclose(pyro.param("loc").grad, want, rtol=1e-12)
    assert loss.last["penalty"] == pytest.approx(R1(2.0)(reference, real, fake).item(), rel=1e-13)


# -- the generator gradient regularizer --------------------------------------------------------
THETA0 = [0.4, 1.1]
DATA = torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 0.3]], dtype=torch.float64)


def point_model(x):
    """The generator x_i = theta for every i: L_G is a function of theta in closed form."""
    theta = pyro.param("theta", lambda: torch.tensor(THETA0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Delta(theta.expand(x.shape[0], 2), event_dim=1), obs=x)


def empty_guide(x):
    pass


def theta_grad_and_critic_grads(loss):
    loss.loss_and_grads(point_model, empty_guide, DATA)
    return pyro.param("theta").grad.clone(), [p.grad.clone() for p in loss.critic.parameters()]


@pytest.mark.parametrize("lam", [0.7, 2.0])
def test_generator_penalty_wasserstein_quadratic_critic(lam):
    """L_G(theta) = -D(theta) = -(theta^T S theta / 2 + b.theta): g = -(S theta + b), H = -S.
    The regularized update is grad [L_G + lam ||g||^2] = g + 2 lam H g."""
    loss = WassersteinLoss(Quadratic(A0, B0), penalty=None, critic_steps=1,
                           generator_penalty=GeneratorGradientPenalty(lam))
    theta_grad, critic_grads = theta_grad_and_critic_grads(loss)
    theta, S, b = torch.tensor(THETA0), 0.5 * (torch.tensor(A0) + torch.tensor(A0).T), torch.tensor(B0)
    g = -(S @ theta + b)
    want = g + 2 * lam * (-S) @ g
    assert torch.allclose(theta_grad, want, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(theta_grad, g, rtol=1e-3)  # not a no-op
    assert loss.last["generator_penalty"] == pytest.approx(lam * g.pow(2).sum().item(), rel=1e-12)
    assert loss.last["generator_loss"] == pytest.approx(
        -(0.5 * theta @ S @ theta + b @ theta).item() + lam * g.pow(2).sum().item(), rel=1e-12)

    # The critic's gradient is its own loss's alone (regression: the frozen critic's saved
    # weights used to receive the penalty's second-order gradient).
    pyro.clear_param_store()
    plain = WassersteinLoss(Quadratic(A0, B0), penalty=None, critic_steps=1)
    plain_theta_grad, plain_critic_grads = theta_grad_and_critic_grads(plain)
    assert torch.allclose(plain_theta_grad, g, rtol=1e-12)
    for a, c in zip(critic_grads, plain_critic_grads):
        assert torch.equal(a, c)


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_generator_penalty_fgan_linear_critic(lam):
    """GAN, nonsaturating, V(x) = w.x + c: L_G(theta) = softplus(-V(theta)), so
    g = -sigmoid(-V) w and H = sigmoid(V) sigmoid(-V) w w^T; the update is g + 2 lam H g."""
    w, c = torch.tensor([0.8, -1.3]), 0.2
    loss = FGANLoss("gan", linear(w.tolist(), bias=c), generator_objective="nonsaturating",
                    generator_penalty=GeneratorGradientPenalty(lam))
    theta_grad, critic_grads = theta_grad_and_critic_grads(loss)
    v = (w @ torch.tensor(THETA0) + c).item()
    s_minus, s_plus = torch.sigmoid(torch.tensor(-v)), torch.sigmoid(torch.tensor(v))
    g = -s_minus * w
    H = s_plus * s_minus * torch.outer(w, w)
    assert torch.allclose(theta_grad, g + 2 * lam * H @ g, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(theta_grad, g, rtol=1e-3)

    pyro.clear_param_store()
    plain = FGANLoss("gan", linear(w.tolist(), bias=c), generator_objective="nonsaturating")
    plain_theta_grad, plain_critic_grads = theta_grad_and_critic_grads(plain)
    assert torch.allclose(plain_theta_grad, g, rtol=1e-12)
    for a, b in zip(critic_grads, plain_critic_grads):
        assert torch.equal(a, b)


def test_generator_penalty_zero_weight_is_the_plain_update():
    loss = WassersteinLoss(Quadratic(A0, B0), penalty=None, critic_steps=1,
                           generator_penalty=GeneratorGradientPenalty(0.0))
    theta_grad, _ = theta_grad_and_critic_grads(loss)
    S, b = 0.5 * (torch.tensor(A0) + torch.tensor(A0).T), torch.tensor(B0)
    assert torch.allclose(theta_grad, -(S @ torch.tensor(THETA0) + b), rtol=1e-12)


def test_generator_penalty_only_on_generator_steps_and_not_in_loss():
    lam = 0.7
    loss = WassersteinLoss(Quadratic(A0, B0), penalty=None, critic_steps=2,
                           generator_penalty=GeneratorGradientPenalty(lam))
    plain_value = loss.loss(point_model, empty_guide, DATA)[1]
    assert loss.last["generator_penalty"] == 0.0
    loss.loss_and_grads(point_model, empty_guide, DATA)  # critic-only step
    assert loss.last["generator_penalty"] == 0.0 and loss.last["generator_loss"] == plain_value
    loss.loss_and_grads(point_model, empty_guide, DATA)
    assert loss.last["generator_penalty"] > 0.0
    assert loss.last["generator_loss"] == pytest.approx(plain_value + loss.last["generator_penalty"], rel=1e-13)


def test_generator_penalty_without_trainable_parameters_is_zero():
    penalty = GeneratorGradientPenalty(1.0)
    x = torch.ones(3, requires_grad=True)
    value = penalty((x**2).sum(), [torch.ones(2)], x)
    assert value.item() == 0.0


def _mmd_sample_gradients(y, x, lams):
    """d MMD_b^2 / d y_i by hand for k(a, b) = sum_l exp(-l ||a - b||^2):
    (2/m^2) sum_j d1 k(y_i, y_j) - (2/(n m)) sum_j d1 k(y_i, x_j), with
    d1 k(a, b) = sum_l -2 l (a - b) exp(-l ||a - b||^2)."""
    n, m = x.shape[0], y.shape[0]

    def d1(a, b):
        d = a - b
        return sum(-2 * lam * d * torch.exp(-lam * d.pow(2).sum()) for lam in lams)

    rows = []
    for i in range(m):
        yy = sum(d1(y[i], y[j]) for j in range(m))
        yx = sum(d1(y[i], x[j]) for j in range(n))
        rows.append(2 * yy / m**2 - 2 * yx / (n * m))
    return torch.stack(rows)


def test_generator_penalty_wrt_samples_for_mmd():
    """wrt="samples": lam * mean_i ||dL/dy_i|| with L the biased MMD^2 and y_i = theta + z_i.
    The value is checked against hand-derived sample gradients, the parameter's gradient
    against autograd of the hand-derived expression."""
    lam, lams = 0.6, (1.0, 0.25)
    z, x = points(5, seed=11), points(5, shift=1.0, seed=12)
    theta0 = torch.tensor([0.3, -0.2])

    def model(data):
        theta = pyro.param("theta", lambda: theta0.clone())
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", dist.Delta(theta + z, event_dim=1), obs=data)

    loss = MMDLoss(RBFMixture(lams), generator_penalty=GeneratorGradientPenalty(lam, wrt="samples"))
    critic_loss, generator_loss = loss.loss_and_grads(model, empty_guide, x)

    theta = theta0.clone().requires_grad_(True)
    y = theta + z

    def k(a, b):
        return sum(torch.exp(-l * (a[:, None] - b[None]).pow(2).sum(-1)) for l in lams)

    mmd = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    per_sample = _mmd_sample_gradients(y, x, lams)
    penalty = lam * per_sample.norm(dim=1).mean()
    (want,) = torch.autograd.grad(mmd + penalty, theta, retain_graph=True)

    assert critic_loss == 0.0
    assert loss.last["generator_penalty"] == pytest.approx(penalty.item(), rel=1e-12)
    assert generator_loss == pytest.approx((mmd + penalty).item(), rel=1e-12)
    assert torch.allclose(pyro.param("theta").grad, want, rtol=1e-10, atol=1e-13)
    (plain,) = torch.autograd.grad(mmd, theta)
    assert not torch.allclose(want, plain, rtol=1e-3)  # not a no-op


# -- ValueError branches -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GradientPenalty(-1.0), "weight >= 0"),
        (lambda: GradientPenalty("10"), "weight >= 0"),
        (lambda: R1(-0.1), "gamma >= 0"),
        (lambda: R2(None), "gamma >= 0"),
        (lambda: WGANDiv(k=-2.0), "k >= 0"),
        (lambda: WGANDiv(p=0.0), "p > 0"),
        (lambda: Lazy(R1(), every=0), "every to be an int >= 1"),
        (lambda: Lazy(R1(), every=2.0), "every to be an int >= 1"),
        (lambda: GeneratorGradientPenalty(-1.0), "weight >= 0"),
        (lambda: GeneratorGradientPenalty(1.0, wrt="inputs"), "wrt in"),
        (lambda: WeightClipping(0.0), "clip > 0"),
        (lambda: WassersteinLoss(torch.nn.Linear(1, 1), penalty=10.0), "penalty to be callable"),
        (lambda: WassersteinLoss(torch.nn.Linear(1, 1), constraint=0.01), "constraint to be callable"),
        (lambda: WassersteinLoss(torch.nn.Linear(1, 1), generator_penalty=0.5), "generator_penalty to be callable"),
    ],
)
def test_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
