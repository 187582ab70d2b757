"""SAM: the closed forms of benchmarks.md 7.4 (rho = 0 is the base loss, bitwise; on
L(w) = 1/2 w^T A w the gradient is A(w + rho A w / ||A w||); the adaptive form), per-player norms,
the bit-exact restore, frozen BatchNorm statistics, replayed random numbers, step counters,
SVI, and every ValueError branch."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from bayesgan.handlers import relax
from bayesgan.infer import SAM, AdversarialLoss, FGANLoss, WassersteinLoss
from bayesgan.models import GeneratorModel
from bayesgan.penalties import R1, GradientPenalty, Lazy, Penalty

pytestmark = pytest.mark.usefixtures("float64")




def guide(*args, **kwargs):
    pass


def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g)
    return m @ m.T + 0.5 * torch.eye(d)


# -- a GAN loss whose two losses are exact quadratics ---------------------------------------------
class QuadraticCritic(torch.nn.Module):
    """D(x) = 1/2 x^T A x + 1/2 c^T B c with parameter c and fixed A, B."""

    def __init__(self, A, B, c0):
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("B", B)
        self.c = torch.nn.Parameter(c0.clone())

    def forward(self, x):
        return 0.5 * ((x @ self.A) * x).sum(-1, keepdim=True) + 0.5 * self.c @ self.B @ self.c


class QuadraticLoss(AdversarialLoss):
    """L_D = mean D(fake.detach()) and L_G = mean D(fake) with the critic frozen. The model's
    fake is the generator parameter w itself, so L_G = 1/2 w^T A w + const (gradient A w) and
    L_D = 1/2 c^T B c + const (gradient B c)."""

    def _critic_objective(self, v_real, v_fake):
        return v_fake.mean(), {}

    def _generator_objective(self, v_real, v_gen):
        return v_gen.mean()


def w_model(w0):
    def model(x):
        w = pyro.param("w", lambda: w0.clone())
        with pyro.plate("data", 1):
            return pyro.sample("x", dist.Delta(w.unsqueeze(0), event_dim=1), obs=x)

    return model


D_W, D_C = 4, 3


@pytest.fixture
def quadratic():
    A, B = _spd(D_W, 1), _spd(D_C, 2)
    w0 = torch.tensor([1.0, -2.0, 0.5, 3.0])
    c0 = torch.tensor([0.3, -1.5, 2.0])
    critic = QuadraticCritic(A, B, c0)
    return A, B, w0, c0, critic, w_model(w0)


def _grads(sam, critic, model):
    sam.loss_and_grads(model, guide, torch.zeros(1, D_W))
    w = pyro.param("w").unconstrained()
    return w.grad.clone(), critic.c.grad.clone()


def _sam_gradient(H, w, rho):
    return H @ (w + rho * (H @ w) / (H @ w).norm())


def _asam_gradient(H, w, rho, eta):
    t = w.abs() + eta
    g = H @ w
    return H @ (w + rho * t**2 * g / (t * g).norm())


def test_quadratic_loss_gradients(quadratic):
    A, B, w0, c0, critic, model = quadratic
    loss = QuadraticLoss(critic)
    loss.loss_and_grads(model, guide, torch.zeros(1, D_W))
    assert torch.allclose(pyro.param("w").unconstrained().grad, A @ w0, rtol=1e-13)
    assert torch.allclose(critic.c.grad, B @ c0, rtol=1e-13)


@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_sam_gradient_on_a_quadratic(quadratic, rho):
    """Per-player norms: w gets A(w + rho Aw/||Aw||), c gets B(c + rho Bc/||Bc||)."""
    A, B, w0, c0, critic, model = quadratic
    gw, gc = _grads(SAM(QuadraticLoss(critic), rho=rho), critic, model)
    assert torch.allclose(gw, _sam_gradient(A, w0, rho), rtol=1e-12)
    assert torch.allclose(gc, _sam_gradient(B, c0, rho), rtol=1e-12)
    # a single norm over both players would give another answer
    joint = torch.cat([A @ w0, B @ c0]).norm()
    assert not torch.allclose(gw, A @ (w0 + rho * (A @ w0) / joint), rtol=1e-6)


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_adaptive_sam_gradient_on_a_quadratic(quadratic, eta):
    """ASAM: A(w + rho T^2 Aw / ||T Aw||), T = diag(|w| + eta), per player."""
    A, B, w0, c0, critic, model = quadratic
    gw, gc = _grads(SAM(QuadraticLoss(critic), rho=2.0, adaptive=True, eta=eta), critic, model)
    assert torch.allclose(gw, _asam_gradient(A, w0, 2.0, eta), rtol=1e-12)
    assert torch.allclose(gc, _asam_gradient(B, c0, 2.0, eta), rtol=1e-12)


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_player_keeps_the_others_first_pass_gradient(quadratic, adaptive):
    A, B, w0, c0, critic, model = quadratic
    rho = 2.0 if adaptive else 0.5
    want = (lambda H, v: _asam_gradient(H, v, rho, 0.0)) if adaptive else (lambda H, v: _sam_gradient(H, v, rho))

    gw, gc = _grads(SAM(QuadraticLoss(critic), rho=rho, adaptive=adaptive, players=("generator",)), critic, model)
    assert torch.allclose(gw, want(A, w0), rtol=1e-12)
    assert torch.allclose(gc, B @ c0, rtol=1e-13)

    pyro.clear_param_store()
    critic.c.grad = None
    gw, gc = _grads(SAM(QuadraticLoss(critic), rho=rho, adaptive=adaptive, players=["critic"]), critic, model)
    assert torch.allclose(gw, A @ w0, rtol=1e-14)
    assert torch.allclose(gc, want(B, c0), rtol=1e-12)


def test_first_pass_gradient_of_an_unperturbed_player_is_bitwise_the_first_pass(quadratic):
    A, B, w0, c0, critic, model = quadratic
    QuadraticLoss(critic).loss_and_grads(model, guide, torch.zeros(1, D_W))
    want = critic.c.grad.clone()
    critic.c.grad = None
    pyro.clear_param_store()
    _, gc = _grads(SAM(QuadraticLoss(critic), rho=0.5, players=("generator",)), critic, model)
    assert torch.equal(gc, want)


# -- networks ------------------------------------------------------------------------------------
def mlp(i, o, width=8, batchnorm=False):
    layers = [torch.nn.Linear(i, width)]
    if batchnorm:
        layers.append(torch.nn.BatchNorm1d(width))
    layers += [torch.nn.Tanh(), torch.nn.Linear(width, o)]
    return torch.nn.Sequential(*layers)


def make_gan(batchnorm=False, penalty=None, seed=0):
    torch.manual_seed(seed)
    G, critic = mlp(2, 2, batchnorm=batchnorm), mlp(2, 1, batchnorm=batchnorm)
    x = torch.randn(32, 2) + 1.0
    loss = FGANLoss("js", critic, penalty=penalty)
    return G, critic, GeneratorModel(G, latent_dim=2), loss, x


def params_of(*modules):
    return [p for m in modules for p in m.parameters()]


def clear_grads(*modules):
    for p in params_of(*modules):
        p.grad = None


def test_rho_zero_is_the_base_loss_bitwise():
    G, critic, model, loss, x = make_gan(penalty=GradientPenalty(1.0))
    pyro.set_rng_seed(5)
    want_losses = loss.loss_and_grads(model, guide, x)
    want = [p.grad.clone() for p in params_of(G, critic)]
    clear_grads(G, critic)
    pyro.set_rng_seed(5)
    losses = SAM(loss, rho=0.0).loss_and_grads(model, guide, x)
    assert losses == want_losses
    assert all(torch.equal(p.grad, g) for p, g in zip(params_of(G, critic), want))


@pytest.mark.parametrize("adaptive", [False, True])
def test_parameters_are_restored_bit_for_bit(adaptive):
    """After the step the parameters are those before it, bit for bit; the losses returned are
    the first pass's (a plain step's); the gradients are the second pass's."""
    G, critic, model, loss, x = make_gan(batchnorm=True)
    state = [copy.deepcopy(m.state_dict()) for m in (G, critic)]
    pyro.set_rng_seed(0)
    plain_losses = loss.loss_and_grads(model, guide, x)
    plain = [p.grad.clone() for p in params_of(G, critic)]
    for m, s in zip((G, critic), state):
        m.load_state_dict(s)
    clear_grads(G, critic)
    before = [p.detach().clone() for p in params_of(G, critic)]
    pyro.set_rng_seed(0)
    sam = SAM(loss, rho=2.0 if adaptive else 0.1, adaptive=adaptive)
    losses = sam.loss_and_grads(model, guide, x)
    assert all(torch.equal(a, p) for a, p in zip(before, params_of(G, critic)))
    assert losses == plain_losses
    assert (sam.last["critic_loss"], sam.last["generator_loss"]) == losses
    assert all(not torch.equal(p.grad, g) for p, g in zip(params_of(G, critic), plain))


@pytest.mark.parametrize("player,other", [("generator", "critic"), ("critic", "generator")])
def test_the_unperturbed_player_keeps_the_plain_gradient(player, other):
    """Here the other player's gradient does depend on the perturbed one (the fakes move with
    the generator, the generator's gradient goes through the critic), and it is still the first
    pass's, bit for bit."""
    G, critic, model, loss, x = make_gan()
    modules = {"generator": G, "critic": critic}
    pyro.set_rng_seed(4)
    loss.loss_and_grads(model, guide, x)
    plain = {k: [p.grad.clone() for p in m.parameters()] for k, m in modules.items()}
    clear_grads(G, critic)
    pyro.set_rng_seed(4)
    SAM(loss, rho=0.5, players=(player,)).loss_and_grads(model, guide, x)
    assert all(torch.equal(p.grad, g) for p, g in zip(modules[other].parameters(), plain[other]))
    assert all(not torch.equal(p.grad, g) for p, g in zip(modules[player].parameters(), plain[player]))
    clear_grads(G, critic)
    pyro.set_rng_seed(4)
    SAM(loss, rho=0.5).loss_and_grads(model, guide, x)  # both perturbed: the other's changes too
    assert all(not torch.equal(p.grad, g) for p, g in zip(modules[other].parameters(), plain[other]))


def _buffers(*modules):
    return [b.clone() for m in modules for b in m.buffers()]


def test_batchnorm_statistics_after_a_sam_step_equal_a_plain_step():
    G, critic, model, loss, x = make_gan(batchnorm=True)
    state = [copy.deepcopy(m.state_dict()) for m in (G, critic)]
    initial = _buffers(G, critic)
    pyro.set_rng_seed(3)
    loss.loss_and_grads(model, guide, x)
    plain = _buffers(G, critic)
    for m, s in zip((G, critic), state):
        m.load_state_dict(s)
    clear_grads(G, critic)
    pyro.set_rng_seed(3)
    SAM(loss, rho=0.5).loss_and_grads(model, guide, x)
    after = _buffers(G, critic)
    assert all(torch.equal(a, b) for a, b in zip(after, plain))
    assert all(not torch.equal(a, b) for a, b in zip(initial, plain))  # the step moves them
    assert G[1].num_batches_tracked.item() == 1  # the generator runs once per pass
    assert critic[1].num_batches_tracked.item() == 3  # the critic sees real, fake, fake again


def test_the_second_pass_sees_the_same_latents_and_random_numbers():
    """The RNG is replayed: the same z and the same GP interpolates in both passes, and the
    stream continues afterwards as after one plain step."""
    G, critic, _, _, x = make_gan()
    latents = []

    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            latents.append(z.clone())
            return pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    pyro.set_rng_seed(1)
    FGANLoss("js", critic, penalty=GradientPenalty(1.0)).loss_and_grads(model, guide, x)
    after_plain = torch.get_rng_state()
    clear_grads(G, critic)
    pyro.set_rng_seed(1)
    SAM(FGANLoss("js", critic, penalty=GradientPenalty(1.0)), rho=0.5).loss_and_grads(model, guide, x)
    assert len(latents) == 3
    assert torch.equal(latents[0], latents[1]) and torch.equal(latents[1], latents[2])
    assert torch.equal(torch.get_rng_state(), after_plain)


class Counting(Penalty):
    """A penalty that counts the times it is really evaluated."""

    def __init__(self):
        self.evaluated = 0

    def __call__(self, critic, real, fake):
        self.evaluated += 1
        return R1(1.0)(critic, real, fake)


def test_counters_advance_once_per_sam_step():
    """A Lazy penalty's calls, the loss's step and a relax wrapper's step advance by one per SAM
    step; the second pass sees the same counters as the first (the same lazy activity and the
    same schedule step)."""
    inner = Counting()
    lazy = Lazy(inner, every=2)
    schedule_steps = []

    def schedule(t):
        schedule_steps.append(t)
        return 0.1

    G, critic, model, _, x = make_gan()
    relaxed = relax(model, scale=schedule)
    loss = SAM(FGANLoss("js", critic, penalty=lazy + GradientPenalty(1.0)), rho=0.1)
    svi = SVI(relaxed, guide, Adam({"lr": 1e-3}), loss)
    for _ in range(3):
        svi.step(x)
    assert lazy.calls == 3
    assert inner.evaluated == 4  # steps 0 and 2 are lazy steps, each evaluated in both passes
    assert relaxed.messenger.step == 3
    assert loss.step == loss.base.step == 3
    assert schedule_steps == [0, 0, 1, 1, 2, 2]


def test_sam_through_svi_runs():
    G, critic, model, _, x = make_gan(batchnorm=True)
    sam = SAM(FGANLoss("js", critic), rho=2.0, adaptive=True)
    svi = SVI(model, guide, Adam({"lr": 1e-3, "betas": (0.5, 0.999)}), loss=sam)
    before = [p.detach().clone() for p in params_of(G, critic)]
    for _ in range(3):
        critic_loss, generator_loss = svi.step(x)
        assert torch.isfinite(torch.tensor([critic_loss, generator_loss])).all()
    assert all(not torch.equal(a, p) for a, p in zip(before, params_of(G, critic)))
    assert sam.last["step"] == 2
    pyro.set_rng_seed(9)
    want = sam.base.loss(model, guide, x)
    pyro.set_rng_seed(9)
    assert svi.evaluate_loss(x) == want


def test_sam_wgan_with_critic_steps_through_svi():
    """On critic-only steps the generator is not captured and stays bitwise unchanged."""
    G, critic, model, _, x = make_gan()
    svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=SAM(WassersteinLoss(critic, critic_steps=2), rho=0.05))
    before = [p.detach().clone() for p in G.parameters()]
    svi.step(x)
    assert all(torch.equal(a, p) for a, p in zip(before, G.parameters()))
    svi.step(x)
    assert all(not torch.equal(a, p) for a, p in zip(before, G.parameters()))


def test_repr_and_last():
    loss = SAM(FGANLoss("js", torch.nn.Linear(2, 1)), rho=0.05, players=["critic"])
    assert repr(loss).endswith("rho=0.05, adaptive=False, players=('critic',))")
    assert loss.last == {}


# -- ValueError branches -------------------------------------------------------------------------
@pytest.mark.parametrize("rho", [-0.1, -1, "0.05", None, torch.tensor(0.05)])
def test_bad_rho(rho):
    with pytest.raises(ValueError, match="Expected rho >= 0"):
        SAM(FGANLoss("js", torch.nn.Linear(2, 1)), rho=rho)


@pytest.mark.parametrize("players", [(), ("generator", "discriminator"), ("gen",), "generator"])
def test_bad_players(players):
    with pytest.raises(ValueError, match="Expected players"):
        SAM(FGANLoss("js", torch.nn.Linear(2, 1)), rho=0.05, players=players)


def test_bad_eta():
    with pytest.raises(ValueError, match="Expected eta >= 0"):
        SAM(FGANLoss("js", torch.nn.Linear(2, 1)), rho=0.05, adaptive=True, eta=-0.01)


@pytest.mark.parametrize("loss", [None, "js", torch.nn.Linear(2, 1), lambda m, g, x: 0.0])
def test_not_a_loss(loss):
    with pytest.raises(ValueError, match="Expected a loss with loss_and_grads"):
        SAM(loss, rho=0.05)
