"""relax: which samples carry the noise, equality with the hand-written relaxed model, schedules
evaluated at the right step, scale 0, every ValueError branch; then the Dirac-GAN of Mescheder
et al. (2018), which instance noise makes convergent (benchmarks.md section 6)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import SGD

from bayesgan.handlers import RelaxMessenger, constant, exponential, linear, relax
from bayesgan.infer import FGANLoss
from bayesgan.models import GeneratorModel

pytestmark = pytest.mark.usefixtures("float64")




def guide(*args, **kwargs):
    pass


class Recorder(torch.nn.Module):
    """A linear critic that keeps its inputs: the loss calls it on (real, fake.detach(), fake)."""

    def __init__(self, dim=2):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((dim,), 0.5))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return (x * self.w).sum(-1, keepdim=True)


def loc_model(x):
    """x ~ delta(loc): no latent, so the relaxation's noise is the only random draw."""
    loc = pyro.param("loc", lambda: torch.zeros(1, 2))
    with pyro.plate("data", x.shape[0]):
        return pyro.sample("x", dist.Delta(loc.expand(x.shape[0], 2), event_dim=1), obs=x)


def fixed(values):
    """A ``noise=`` function returning fixed draws (common random numbers)."""
    return lambda shape, dtype, device: values.reshape(shape).to(dtype=dtype, device=device)


def seen_real_fake(model, x, seed=0):
    """The (real, fake) pair the loss sees in one loss() call under ``seed``."""
    critic = Recorder(x.shape[-1])
    pyro.set_rng_seed(seed)
    FGANLoss("js", critic).loss(model, guide, x)
    real, fake = critic.seen  # loss() calls the critic on the real batch and the fakes only
    return real, fake


# -- which samples carry the noise ------------------------------------------------------------
def test_where_fake_noises_only_the_fakes():
    """The loss sees the raw data as real and G(z) + sigma * eps as fake, eps the torch draw
    after z's (replayed from the seed)."""
    G = torch.nn.Linear(2, 2)
    z_seen = []
    G.register_forward_hook(lambda m, inputs, out: z_seen.append(inputs[0].detach().clone()))
    x = torch.randn(6, 2)
    real, fake = seen_real_fake(relax(GeneratorModel(G, latent_dim=2), scale=0.3), x, seed=3)

    torch.manual_seed(3)
    z, eps = torch.randn(6, 2), torch.randn(6, 2)
    assert torch.equal(z_seen[0], z)
    assert torch.equal(real, x)
    with torch.no_grad():
        assert torch.equal(fake, G(z) + eps * 0.3)


def test_where_both_noises_the_data_too_with_the_given_noise():
    """Instance noise: real = data + sigma * eps' with eps' from ``noise=``; the fake keeps its
    own draw (the first torch draw, since ``noise=`` uses none)."""
    x = torch.randn(5, 2)
    eps_data = torch.linspace(-1.0, 1.0, 10).reshape(5, 2)
    real, fake = seen_real_fake(relax(loc_model, scale=0.4, where="both", noise=fixed(eps_data)), x, seed=1)

    torch.manual_seed(1)
    eps = torch.randn(5, 2)
    assert torch.equal(real, x + 0.4 * eps_data)
    assert torch.equal(fake, eps * 0.4)


def test_where_both_default_noise_is_standard_normal():
    """Without ``noise=`` the data's noise is the first torch draw, the fake's the second."""
    x = torch.randn(5, 2)
    real, fake = seen_real_fake(relax(loc_model, scale=0.4, where="both"), x, seed=2)
    torch.manual_seed(2)
    eps_data, eps = torch.randn(5, 2), torch.randn(5, 2)
    assert torch.equal(real, x + 0.4 * eps_data)
    assert torch.equal(fake, eps * 0.4)


def test_sampling_without_data_is_relaxed_but_not_counted():
    relaxed = relax(GeneratorModel(torch.nn.Linear(2, 3), latent_dim=2), scale=0.5)
    trace = pyro.poutine.trace(relaxed).get_trace(num_samples=4)
    fn = trace.nodes["x"]["fn"]
    assert isinstance(fn.base_dist, dist.Normal) and torch.all(fn.base_dist.scale == 0.5)
    assert relaxed.messenger.step == 0


def test_context_manager_form():
    with relax(scale=0.2) as messenger:
        trace = pyro.poutine.trace(loc_model).get_trace(torch.zeros(3, 2))
    assert isinstance(messenger, RelaxMessenger)
    assert type(trace.nodes["x"]["fn"].base_dist) is dist.Normal
    assert messenger.step == 1


def test_other_sites_are_left_alone():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Delta(torch.ones(x.shape[0], 2), event_dim=1))
            return pyro.sample("x", dist.Delta(z, event_dim=1), obs=x)

    trace = pyro.poutine.trace(relax(model, scale=0.1)).get_trace(torch.zeros(3, 2))
    assert type(trace.nodes["z"]["fn"]) is dist.Delta
    assert type(trace.nodes["x"]["fn"].base_dist) is dist.Normal


# -- equality with the model written by hand ---------------------------------------------------
def _losses_and_grads(model, G, critic, x):
    pyro.clear_param_store()
    for p in (*G.parameters(), *critic.parameters()):
        p.grad = None
    pyro.set_rng_seed(11)
    losses = FGANLoss("js", critic).loss_and_grads(model, guide, x)
    return losses, [p.grad.clone() for p in (*G.parameters(), *critic.parameters())]


def test_relax_equals_the_hand_written_normal_likelihood():
    """relax(model, scale=s) and the model written with Normal(G(z), s).to_event(1): same draws,
    losses and gradients under the same seed, bit for bit."""
    G = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(16, 2) + 1.0

    def point_mass(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            return pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    def by_hand(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            return pyro.sample("x", dist.Normal(G(z), 0.3).to_event(1), obs=x)

    want_losses, want_grads = _losses_and_grads(by_hand, G, critic, x)
    losses, grads = _losses_and_grads(relax(point_mass, scale=0.3), G, critic, x)
    assert losses == want_losses
    assert all(torch.equal(a, b) for a, b in zip(grads, want_grads))
    # GeneratorModel(scale=s) is the same model again.
    losses, grads = _losses_and_grads(GeneratorModel(G, latent_dim=2, scale=0.3), G, critic, x)
    assert losses == want_losses
    # and the relaxation changes something: the point-mass model gives other values.
    plain_losses, _ = _losses_and_grads(point_mass, G, critic, x)
    assert plain_losses != want_losses


# -- schedules -----------------------------------------------------------------------------------
def test_schedule_functions():
    assert [constant(0.25)(t) for t in (0, 7, 10**6)] == [0.25, 0.25, 0.25]
    assert [linear(0.3, 0.1, 4)(t) for t in (0, 2, 4, 9)] == pytest.approx([0.3, 0.2, 0.1, 0.1], abs=1e-15)
    assert [exponential(0.4, 2)(t) for t in (0, 2, 4, 1)] == pytest.approx([0.4, 0.2, 0.1, 0.4 / math.sqrt(2)])


@pytest.mark.parametrize(
    "scale,want",
    [
        (lambda t: [0.1, 0.2, 0.3][t], [0.1, 0.2, 0.3]),
        (linear(0.3, 0.1, 2), [0.3, 0.2, 0.1]),
        (exponential(0.4, 1), [0.4, 0.2, 0.1]),
        (constant(0.25), [0.25, 0.25, 0.25]),
        (0.25, [0.25, 0.25, 0.25]),
    ],
    ids=["lambda", "linear", "exponential", "constant", "float"],
)
def test_schedule_is_evaluated_at_the_number_of_observed_calls(scale, want):
    """Step t (the t-th svi.step, counting from 0) uses scale(t): current_scale() before the step
    says so, and the noise of that step's data and fakes has exactly that scale."""
    n = 2000
    eps_data = torch.ones(n, 2)
    relaxed = relax(loc_model, scale=scale, where="both", noise=fixed(eps_data))
    critic = Recorder()
    svi = SVI(relaxed, guide, SGD({"lr": 0.0}), FGANLoss("js", critic))
    x = torch.zeros(n, 2)
    for t, sigma in enumerate(want):
        assert relaxed.messenger.step == t
        assert relaxed.messenger.current_scale() == pytest.approx(sigma, abs=1e-15)
        critic.seen.clear()
        pyro.set_rng_seed(t)
        svi.step(x)
        real, fake = critic.seen[:2]
        torch.manual_seed(t)
        eps = torch.randn(n, 2)
        assert torch.equal(real, x + sigma * eps_data)  # the scale used is sigma, exactly
        assert torch.equal(fake, eps * sigma)
        assert fake.std().item() == pytest.approx(sigma, rel=0.05)  # the actual noise level
    assert relaxed.messenger.step == len(want)


def test_step_counts_loss_calls_and_can_be_set_to_resume():
    seen_steps = []

    def schedule(t):
        seen_steps.append(t)
        return 0.1

    relaxed = relax(loc_model, scale=schedule)
    loss = FGANLoss("js", Recorder())
    loss.loss(relaxed, guide, torch.zeros(3, 2))
    loss.loss_and_grads(relaxed, guide, torch.zeros(3, 2))
    relaxed.messenger.step = 10
    loss.loss(relaxed, guide, torch.zeros(3, 2))
    assert seen_steps == [0, 1, 10]
    assert relaxed.messenger.step == 11


@pytest.mark.parametrize("scale", [constant(0.0), linear(0.2, 0.0, 1)], ids=["constant", "linear"])
def test_scale_zero_leaves_the_point_mass(scale):
    """A schedule that reaches 0 leaves the Delta: no noise at all."""
    relaxed = relax(loc_model, scale=scale, where="both", noise=fixed(torch.ones(3, 2)))
    x = torch.randn(3, 2)
    if scale(0) > 0:
        seen_real_fake(relaxed, x)  # step 0 is relaxed; step 1 reaches 0
    trace = pyro.poutine.trace(relaxed).get_trace(x)
    assert type(trace.nodes["x"]["fn"]) is dist.Delta
    real, fake = seen_real_fake(relaxed, x)
    assert torch.equal(real, x)
    assert torch.equal(fake, torch.zeros(3, 2))


# -- ValueError branches -------------------------------------------------------------------------
def test_relaxing_a_non_delta_site():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("x", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="Expected a Delta"):
        pyro.poutine.trace(relax(model, scale=0.1)).get_trace(torch.zeros(3, 2))


@pytest.mark.parametrize("where", ["real", "data", None, ""])
def test_unknown_where(where):
    with pytest.raises(ValueError, match="Expected where"):
        relax(loc_model, scale=0.1, where=where)


@pytest.mark.parametrize("scale", [0, 0.0, -0.1])
def test_non_positive_constant_scale(scale):
    with pytest.raises(ValueError, match="Expected scale > 0"):
        relax(loc_model, scale=scale)


@pytest.mark.parametrize("steps", [0, -3])
def test_linear_needs_positive_steps(steps):
    with pytest.raises(ValueError, match="Expected steps > 0"):
        linear(1.0, 0.0, steps)


@pytest.mark.parametrize("half_life", [0, -1.0])
def test_exponential_needs_positive_half_life(half_life):
    with pytest.raises(ValueError, match="Expected half_life > 0"):
        exponential(1.0, half_life)


# -- the Dirac-GAN (benchmarks.md section 6) ----------------------------------------------------
H, STEPS, SIGMA, N = 0.2, 500, 0.7, 64


def dirac_model(x):
    """p_theta = delta_theta, observed against a plate of zeros (p_D = delta_0)."""
    theta = pyro.param("theta", lambda: torch.tensor([1.0]))
    with pyro.plate("data", x.shape[0]):
        return pyro.sample("x", dist.Delta(theta.expand(x.shape[0], 1), event_dim=1), obs=x)


def train_dirac(model, psi0, rng=None, steps=STEPS, critic=None):
    """Simultaneous gradient descent (one SVI.step updates both players) with step 0.2 from
    theta = 1; the critic is D(x) = psi x. ``rng``: a torch RNG state to restore before every
    step (the same draws every step). Returns the (theta, psi) trajectory."""
    critic = critic if critic is not None else torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        critic.weight.fill_(psi0)
    loss = FGANLoss("gan", critic, generator_objective="saturating")
    svi = SVI(model, guide, SGD({"lr": H}), loss)
    x = torch.zeros(N, 1)
    path = [(1.0, psi0)]
    for _ in range(steps):
        if rng is not None:
            torch.set_rng_state(rng)
        svi.step(x)
        path.append((pyro.param("theta").item(), critic.weight.item()))
    return path


def _paper_simgd(theta, psi, steps):
    """The paper's field v = (-psi f'(psi theta), theta f'(psi theta)), f'(t) = sigmoid(-t)."""
    for _ in range(steps):
        fp = 1 / (1 + math.exp(psi * theta))
        theta, psi = theta - H * psi * fp, psi + H * theta * fp
    return theta, psi


@pytest.mark.parametrize("psi0", [1.0, -1.0])
def test_dirac_gan_without_relax_does_not_converge_and_matches_the_paper(psi0):
    """Our critic's output is the logit of *real* and the paper's that of *fake*, so
    psi_ours = -psi_paper. Checked three ways: the end point equals the paper's field iterated
    independently from (1, -psi_ours); every step satisfies the exact identity
    r_{k+1}^2 = r_k^2 (1 + h^2 f'(psi_paper theta)^2); and from the paper's (1, 1), i.e. our
    psi = -1, SimGD ends at the table's norm 3.097."""
    path = train_dirac(dirac_model, psi0)
    theta, psi = path[-1]
    want_theta, want_psi_paper = _paper_simgd(1.0, -psi0, STEPS)
    assert theta == pytest.approx(want_theta, rel=1e-9)
    assert psi == pytest.approx(-want_psi_paper, rel=1e-9)
    for (t0, p0), (t1, p1) in zip(path, path[1:]):
        fp = 1 / (1 + math.exp(-p0 * t0))
        assert t1**2 + p1**2 == pytest.approx((t0**2 + p0**2) * (1 + H**2 * fp**2), rel=1e-12)
    assert math.hypot(theta, psi) > 0.5
    if psi0 == -1.0:
        assert math.hypot(theta, psi) == pytest.approx(3.097, abs=1e-3)


@pytest.mark.parametrize("psi0", [1.0, -1.0])
def test_dirac_gan_with_instance_noise_converges(psi0):
    """Instance noise sigma = 0.7 (relax(..., where="both")) makes the Dirac-GAN converge.

    Common random numbers, chosen so the test is exact rather than limited by a Monte-Carlo
    floor. With fresh noise every step the iterates stall at a floor set by n (benchmarks.md
    6.2: about 3e-2 at n = 256, 4e-4 at n = 10^6). With fixed but *different* draws eps' (data)
    and eps (fakes), the fixed-noise objective f(psi(theta + sigma eps)) + f(-psi sigma eps')
    has its equilibrium at theta* = sigma (mean eps' - mean eps), about sigma / sqrt(n): 1e-3
    would again need n near 10^6 (symmetric normal quantiles make mean eps' = 0 but not
    mean eps). So: restoring one torch RNG state before every step (as pyro.set_rng_seed(seed)
    would, more cheaply) makes the fake's eps (the Normal site's rsample, the step's only draw)
    the same n = 64 draws each step, and ``noise=``
    returns those very draws for the data. The equilibrium is then exactly (0, 0), and its
    Jacobian is the instance-noise one with sigma^2 replaced by sigma^2 mean(eps^2), so the
    iterates contract as in the quadrature row of the table (5.7e-5 after 500 steps).
    """
    pyro.set_rng_seed(7)
    rng = torch.get_rng_state()
    eps = torch.randn(N, 1)
    relaxed = relax(dirac_model, where="both", scale=SIGMA, noise=fixed(eps))
    critic = torch.nn.Linear(1, 1, bias=False)
    seen = []
    handle = critic.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach().clone()))
    train_dirac(relaxed, psi0, rng=rng, steps=1, critic=critic)
    handle.remove()
    real, fake = seen[:2]
    assert torch.equal(real, SIGMA * eps)  # the data: 0 + sigma eps
    assert torch.equal(fake, 1.0 + eps * SIGMA)  # the fake at theta = 1: theta + sigma eps
    assert relaxed.messenger.step == 1

    pyro.clear_param_store()
    relaxed.messenger.step = 0
    path = train_dirac(relaxed, psi0, rng=rng)
    assert math.hypot(*path[-1]) < 1e-3
    assert relaxed.messenger.step == STEPS
