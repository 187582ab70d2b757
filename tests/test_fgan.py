"""FGANLoss: hand-derived gradients first, then the player schedule, equilibria, 1-D estimates,
the loss x objective x schedule matrix through SVI.step, and every ValueError branch."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Predictive
from pyro.optim import SGD, Adam

from bayesgan import divergences
from bayesgan.infer import FGANLoss, TrainingDivergedError
from bayesgan.models import GeneratorModel, prior_guide

pytestmark = pytest.mark.usefixtures("float64", "one_thread")

LOG4 = math.log(4.0)
# One name per divergence class: its canonical name (aliases dropped).
DIVERGENCES = sorted({divergences.get(n).name for n in divergences.names()})
LAST_KEYS = {
    "critic_loss", "generator_loss", "critic_real", "critic_fake", "divergence", "penalty", "step",
    "generator_updated", "critic_grad_norm", "generator_grad_norm",
}


def loc_model(x):
    """x = loc + z, z ~ N(0, 1): the 1-D location model of FGANLoss's docstring."""
    loc = pyro.param("loc", lambda: torch.zeros(1))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        return pyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)


def guide(*args, **kwargs):
    pass


def mlp(dim=1, width=16):
    return torch.nn.Sequential(
        torch.nn.Linear(dim, width), torch.nn.Tanh(),
        torch.nn.Linear(width, width), torch.nn.Tanh(),
        torch.nn.Linear(width, 1),
    )


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def unchanged(before, module):
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def every_changed(before, module):
    return all(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_divergence_list_covers_every_class():
    assert sorted(DIVERGENCES) == [
        "alpha", "gan", "js", "kl", "neyman", "pearson", "reverse_kl", "squared_hellinger",
        "total_variation", "weighted_js",
    ]


# -- hand-derived single steps -----------------------------------------------------------------
def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


@pytest.mark.parametrize("objective", ["nonsaturating", "saturating"])
def test_gan_step_matches_hand_derived_gradients(objective):
    """x = mu + z, V(x) = w x + b, GAN divergence; z fixed with poutine.condition; one SGD step.

    L_D = mean softplus(-V(x_r)) + mean softplus(V(x_f))
      dL_D/dw = mean(-sigma(-V_r) x_r) + mean(sigma(V_f) x_f)
      dL_D/db = mean(-sigma(-V_r)) + mean(sigma(V_f))
    L_G (nonsaturating) = mean softplus(-V_f):  dL_G/dmu = -w mean sigma(-V_f)
    L_G (saturating)    = -mean softplus(V_f):  dL_G/dmu = -w mean sigma(V_f)
    """
    mu0, w, b, lr = 0.3, 0.7, -0.2, 0.1
    z = [-1.0, 0.25, 0.5, 2.0]
    xr = [1.5, -0.5, 0.0, 3.0]

    def model(x):
        mu = pyro.param("mu", lambda: torch.tensor([mu0]))
        with pyro.plate("data", x.shape[0]):
            zz = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            return pyro.sample("x", dist.Delta(mu + zz, event_dim=1), obs=x)

    critic = torch.nn.Linear(1, 1)
    with torch.no_grad():
        critic.weight.fill_(w)
        critic.bias.fill_(b)
    conditioned = poutine.condition(model, data={"z": torch.tensor(z)[:, None]})
    loss = FGANLoss("gan", critic, generator_objective=objective)
    svi = SVI(conditioned, guide, SGD({"lr": lr}), loss)
    critic_loss, generator_loss = svi.step(torch.tensor(xr)[:, None])

    xf = [mu0 + zi for zi in z]
    vr = [w * x + b for x in xr]
    vf = [w * x + b for x in xf]
    n = len(z)
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    want_critic_loss = sum(softplus(-v) for v in vr) / n + sum(softplus(v) for v in vf) / n
    dw = sum(-_sigmoid(-v) * x for v, x in zip(vr, xr)) / n
    dw += sum(_sigmoid(v) * x for v, x in zip(vf, xf)) / n
    db = sum(-_sigmoid(-v) for v in vr) / n + sum(_sigmoid(v) for v in vf) / n
    if objective == "nonsaturating":
        want_generator_loss = sum(softplus(-v) for v in vf) / n
        dmu = -w * sum(_sigmoid(-v) for v in vf) / n
    else:
        want_generator_loss = -sum(softplus(v) for v in vf) / n
        dmu = -w * sum(_sigmoid(v) for v in vf) / n

    assert critic_loss == pytest.approx(want_critic_loss, rel=1e-13)
    assert generator_loss == pytest.approx(want_generator_loss, rel=1e-13)
    assert critic.weight.item() == pytest.approx(w - lr * dw, rel=1e-13)
    assert critic.bias.item() == pytest.approx(b - lr * db, rel=1e-13)
    assert pyro.param("mu").item() == pytest.approx(mu0 - lr * dmu, rel=1e-13)


def test_conditioned_latents_and_observed_labels_keep_their_values():
    """Only the observation site is unconditioned for the fakes: a latent fixed with
    poutine.condition and an observed label stay at their given values."""
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen.append(x.detach().clone())
            return (self.w * x).sum(-1)

    centres = torch.tensor([[0.0], [10.0], [20.0]])
    labels = torch.tensor([2, 0, 1, 1, 2])

    def model(x, y):
        loc = pyro.param("loc", centres.clone())
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("y", dist.Categorical(logits=torch.zeros(3)), obs=y)
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            return pyro.sample("x", dist.Delta(loc[c] + z, event_dim=1), obs=x)

    z = torch.linspace(-0.2, 0.2, 5)[:, None]
    loss = FGANLoss("js", Recorder())
    loss.loss(poutine.condition(model, data={"z": z}), guide, torch.zeros(5, 1), labels)
    real, fake = seen
    assert torch.equal(real, torch.zeros(5, 1))
    assert torch.equal(fake, centres[labels] + z)


@pytest.mark.parametrize("divergence,objective", [("js", "nonsaturating"), ("kl", "saturating")])
def test_gradients_are_disjoint(divergence, objective):
    """The critic gets the gradient of L_D alone (fakes detached); the generator gets the
    gradient of L_G alone, through the critic."""
    G = torch.nn.Linear(2, 2)
    critic = mlp(2)
    z, x = torch.randn(16, 2), torch.randn(16, 2) + 1.0

    def fixed_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(z, event_dim=1))

    loss = FGANLoss(divergence, critic, generator_objective=objective)
    loss.loss_and_grads(GeneratorModel(G, latent_dim=2), fixed_guide, x)

    d = divergences.get(divergence)
    c_params, g_params = list(critic.parameters()), list(G.parameters())
    fake = G(z)
    v_real, v_fake = critic(x), critic(fake.detach())
    critic_loss = -d.activation(v_real).mean() + d.f_star_activation(v_fake).mean()
    g_term = d.f_star_activation if objective == "saturating" else d.activation
    generator_loss = -g_term(critic(fake)).mean()
    want_c = torch.autograd.grad(critic_loss, c_params, retain_graph=True)
    want_g = torch.autograd.grad(generator_loss, g_params, retain_graph=True)
    for p, g in zip(c_params, want_c):
        assert torch.allclose(p.grad, g, rtol=1e-12, atol=1e-15)
    for p, g in zip(g_params, want_g):
        assert torch.allclose(p.grad, g, rtol=1e-12, atol=1e-15)
    assert loss.last["critic_loss"] == pytest.approx(critic_loss.item(), rel=1e-13)
    assert loss.last["generator_loss"] == pytest.approx(generator_loss.item(), rel=1e-13)

    # The comparison can tell: a single backward of L_D + L_G with live fakes mixes the players.
    live_critic_loss = -d.activation(critic(x)).mean() + d.f_star_activation(critic(fake)).mean()
    mixed_c = torch.autograd.grad(critic_loss + generator_loss, c_params, retain_graph=True)
    mixed_g = torch.autograd.grad(live_critic_loss + generator_loss, g_params)
    assert not all(torch.allclose(a, b) for a, b in zip(mixed_c, want_c))
    assert not all(torch.allclose(a, b) for a, b in zip(mixed_g, want_g))


# -- the player schedule -----------------------------------------------------------------------
def test_adam_trap_is_real():
    # Why the next test matters: Adam moves a parameter whose gradient is an explicit zero.
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(1)
    opt.step()
    p.grad = torch.zeros(1)
    before = p.detach().clone()
    opt.step()
    assert not torch.equal(p.detach(), before)


def test_critic_steps_leave_the_generator_bitwise_unchanged():
    G, critic = torch.nn.Linear(2, 2), mlp(2)
    loss = FGANLoss("js", critic, critic_steps=3)
    svi = SVI(GeneratorModel(G, latent_dim=2), prior_guide, Adam({"lr": 1e-2}), loss)
    x = torch.randn(32, 2) + 1.0
    for step in range(9):
        g_before, c_before = snapshot(G), snapshot(critic)
        svi.step(x)
        generator_step = step % 3 == 2
        assert loss.last["generator_updated"] is generator_step
        assert loss.last["step"] == step
        assert unchanged(g_before, G) is not generator_step, step
        assert every_changed(c_before, critic), step
        if step == 2:
            # SVI's zero_grads has turned the generator's gradients into explicit zeros: from
            # here on an optimizer that saw them would move the generator on critic-only steps.
            assert all(p.grad is not None and not p.grad.any() for p in G.parameters())
    assert loss.step == 9


def test_separate_learning_rates_through_a_callable():
    critic = mlp()
    optim = Adam(lambda name, param: {"lr": 0.0 if name.startswith("critic") else 5e-2})
    svi = SVI(loc_model, guide, optim, FGANLoss("js", critic))
    x = torch.randn(64, 1) + 3.0
    svi.step(x)
    c_before, loc_before = snapshot(critic), pyro.param("loc").detach().clone()
    for _ in range(3):
        svi.step(x)
    assert unchanged(c_before, critic)
    assert pyro.param("loc").item() > loc_before.item() + 0.05  # moves towards the data at 3


def test_separate_learning_rates_one_argument_form():
    critic = mlp()
    optim = Adam(lambda name: {"lr": 5e-2 if name.startswith("critic.") else 0.0})
    svi = SVI(loc_model, guide, optim, FGANLoss("js", critic))
    x = torch.randn(64, 1) + 3.0
    svi.step(x)
    c_before, loc_before = snapshot(critic), pyro.param("loc").detach().clone()
    svi.step(x)
    assert every_changed(c_before, critic)
    assert torch.equal(pyro.param("loc").detach(), loc_before)


# -- records, the contract of loss() -----------------------------------------------------------
@pytest.mark.parametrize("critic_steps", [1, 2])
def test_gradient_norms_are_recorded(critic_steps):
    critic = mlp()
    loss = FGANLoss("js", critic, critic_steps=critic_steps)
    x = torch.randn(16, 1)
    for step in range(critic_steps):
        for p in list(critic.parameters()) + [pyro.param("loc", lambda: torch.zeros(1)).unconstrained()]:
            p.grad = None
        loss.loss_and_grads(loc_model, guide, x)
    loc_grad = pyro.param("loc").unconstrained().grad
    want = torch.cat([p.grad.flatten() for p in critic.parameters()]).norm().item()
    assert loss.last["critic_grad_norm"] == pytest.approx(want, rel=1e-12)
    assert loss.last["generator_grad_norm"] == pytest.approx(loc_grad.norm().item(), rel=1e-12)
    assert loss.last["generator_grad_norm"] > 0
    if critic_steps == 2:  # a critic-only step: no generator gradient, whatever .grad holds
        loss.loss_and_grads(loc_model, guide, x)
        assert loss.last["generator_grad_norm"] == 0.0 and loss.last["critic_grad_norm"] > 0


def test_last_records_and_divergence_is_minus_critic_loss():
    loss = FGANLoss("js", mlp())
    svi = SVI(loc_model, guide, Adam({"lr": 1e-3}), loss)
    x = torch.randn(32, 1) + 1.0
    critic_loss, generator_loss = svi.step(x)
    assert set(loss.last) == LAST_KEYS
    assert loss.last["critic_loss"] == critic_loss and loss.last["generator_loss"] == generator_loss
    assert loss.last["divergence"] == -loss.last["critic_loss"]
    assert loss.last["penalty"] == 0.0
    assert loss.last["step"] == 0 and loss.last["generator_updated"] is True
    assert all(type(loss.last[k]) is float for k in LAST_KEYS - {"step", "generator_updated"})
    # critic_real - (critic loss on fakes) is the estimate; nonsaturating L_G = -E_Q[g_f(V)].
    assert loss.last["generator_loss"] == pytest.approx(-loss.last["critic_fake"], rel=1e-14)


def test_penalty_is_added_to_the_critic_loss_with_detached_fakes():
    calls = []

    def penalty(critic, real, fake):
        calls.append((real.requires_grad, fake.requires_grad))
        return 0.25 * sum((p**2).sum() for p in critic.parameters())

    critic = mlp()
    want = 0.25 * sum((p**2).sum() for p in critic.parameters()).item()
    loss = FGANLoss("gan", critic, penalty=penalty)
    loss.loss_and_grads(loc_model, guide, torch.randn(16, 1))
    assert calls == [(False, False)]
    assert loss.last["penalty"] == pytest.approx(want, rel=1e-14)
    assert loss.last["critic_loss"] == pytest.approx(-loss.last["divergence"] + want, rel=1e-14)


def test_loss_does_not_count_a_step_and_differentiable_loss_agrees():
    loss = FGANLoss("kl", mlp())
    x = torch.randn(32, 1)
    pyro.set_rng_seed(3)
    values = loss.loss(loc_model, guide, x)
    assert loss.step == 0 and loss.last["generator_updated"] is False
    pyro.set_rng_seed(3)
    tensors = loss.differentiable_loss(loc_model, guide, x)
    assert all(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)
    assert tuple(t.item() for t in tensors) == pytest.approx(values, rel=1e-14)
    assert loss.step == 0


def test_custom_backward_is_used():
    seen = []

    def backward(tensor):
        seen.append(tensor.detach().clone())
        tensor.backward()

    loss = FGANLoss("js", mlp(), backward=backward)
    critic_loss, generator_loss = loss.loss_and_grads(loc_model, guide, torch.randn(8, 1))
    assert len(seen) == 1
    assert seen[0].item() == pytest.approx(critic_loss + generator_loss, rel=1e-14)


def test_default_generator_objective_per_divergence():
    for name in DIVERGENCES:
        d = divergences.get(name)
        assert FGANLoss(d, mlp()).generator_objective == d.default_generator_objective
    assert FGANLoss("reverse_kl", mlp()).generator_objective == "saturating"
    assert FGANLoss("js", mlp()).generator_objective == "nonsaturating"
    assert repr(FGANLoss("gan", mlp(), critic_steps=2)) == (
        "FGANLoss(GAN(), critic_steps=2, generator_objective='nonsaturating')"
    )


# -- equilibria and 1-D estimates --------------------------------------------------------------
def test_gan_constant_critic_at_equal_distributions_gives_log_four():
    critic = torch.nn.Linear(1, 1)
    with torch.no_grad():
        critic.weight.zero_()
        critic.bias.zero_()
    loss = FGANLoss("gan", critic)
    critic_loss, _ = loss.loss(loc_model, guide, torch.randn(64, 1))
    assert critic_loss == pytest.approx(LOG4, rel=1e-15)
    assert loss.last["divergence"] == pytest.approx(-LOG4, rel=1e-15)  # 2 JSD(P, P) - log 4
    assert loss.last["critic_real"] == pytest.approx(-math.log(2), rel=1e-15)  # f'(1)


def test_gan_trained_critic_at_equal_distributions_reaches_log_four():
    G = torch.nn.Linear(1, 1)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G.bias.zero_()
    loss = FGANLoss("gan", mlp(width=16))
    optim = Adam(lambda name, param: {"lr": 0.0 if name == "generator" else 1e-3})
    svi = SVI(GeneratorModel(G, latent_dim=1), prior_guide, optim, loss)
    losses, outputs = [], []
    for _ in range(300):
        losses.append(svi.step(torch.randn(512, 1))[0])
        outputs.append((loss.last["critic_real"], loss.last["critic_fake"]))
    assert G.weight.item() == 1.0 and G.bias.item() == 0.0  # the generator stayed at P
    tail = losses[-100:]
    assert sum(tail) / len(tail) == pytest.approx(LOG4, rel=0.01)
    for k in range(2):  # the critic sits at f'(1) = -log 2
        assert sum(o[k] for o in outputs[-100:]) / 100 == pytest.approx(-math.log(2), abs=0.03)


def test_trained_critic_estimates_kl():
    """KL(N(0,1) || N(1,1)) = 0.5; the optimal critic is T*(x) = 1 + log(p/q) = 1.5 - x."""

    def shifted(x):  # Q = N(1, 1), no parameters
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            return pyro.sample("x", dist.Delta(1.0 + z, event_dim=1), obs=x)

    critic = mlp(width=16)
    loss = FGANLoss("kl", critic)
    svi = SVI(shifted, guide, Adam({"lr": 3e-3}), loss)
    estimates = []
    for _ in range(300):
        svi.step(torch.randn(1024, 1))
        estimates.append(loss.last["divergence"])
    # Seeds 0-7 give 0.490-0.503 here and 0.493-0.505 below.
    assert sum(estimates[-100:]) / 100 == pytest.approx(0.5, rel=0.05)
    with torch.no_grad():  # the bound on a fresh sample, with the trained critic
        real, fake = torch.randn(100_000, 1), 1.0 + torch.randn(100_000, 1)
        bound = critic(real).mean() - torch.exp(critic(fake) - 1).mean()
    assert bound.item() == pytest.approx(0.5, rel=0.05)


# -- the matrix: every divergence x generator objective x schedule through SVI.step -----------
@pytest.mark.parametrize("critic_steps", [1, 3])
@pytest.mark.parametrize("objective", ["saturating", "nonsaturating"])
@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_valid_models(divergence, objective, critic_steps):
    loss = FGANLoss(
        divergence, mlp(width=8), critic_steps=critic_steps, generator_objective=objective
    )
    x = torch.randn(16, 1) + 0.5
    pyro.set_rng_seed(1)
    expected = loss.loss(loc_model, guide, x)
    svi = SVI(loc_model, guide, Adam({"lr": 1e-3}), loss)
    pyro.set_rng_seed(1)
    first = svi.step(x)
    assert first == pytest.approx(expected, rel=1e-14, abs=1e-15)
    for step in range(1, 4):
        out = svi.step(x)
        assert isinstance(out, tuple) and len(out) == 2
        assert all(type(v) is float and math.isfinite(v) for v in out)
        assert loss.last["generator_updated"] is ((step + 1) % critic_steps == 0)


@pytest.mark.parametrize("scale", [None, 0.1])
def test_generator_model_through_svi(scale):
    G = torch.nn.Linear(2, 3)
    svi = SVI(GeneratorModel(G, latent_dim=2, scale=scale), prior_guide, Adam({"lr": 1e-2}),
              FGANLoss("js", mlp(3)))
    before = snapshot(G)
    out = svi.step(torch.randn(16, 3))
    assert all(math.isfinite(v) for v in out)
    assert every_changed(before, G)


@pytest.mark.parametrize("scale", [None, 0.1])
def test_predictive_shapes(scale):
    G = torch.nn.Linear(2, 3)
    samples = Predictive(GeneratorModel(G, latent_dim=2, scale=scale), num_samples=3)(num_samples=5)
    assert samples["x"].shape == (3, 5, 3)
    assert samples["z"].shape == (3, 5, 2)
    with torch.no_grad():
        mean = G(samples["z"])
    if scale is None:
        assert torch.equal(samples["x"], mean)
    else:
        assert not torch.equal(samples["x"], mean)
        assert (samples["x"] - mean).abs().max() < 6 * scale


# -- errors ------------------------------------------------------------------------------------
def _step(model, x, loss=None, *args):
    loss = loss if loss is not None else FGANLoss("js", mlp(x.shape[-1] if x is not None else 1))
    data = () if x is None else (x,)
    return SVI(model, guide, Adam({"lr": 1e-3}), loss).step(*data, *args)


def test_model_without_the_observation_site():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            return pyro.sample("y", dist.Delta(z, event_dim=1), obs=x)

    with pytest.raises(ValueError, match=r"observation site 'x'.*\['z', 'y'\].*obs_site="):
        _step(model, torch.randn(4, 1))


def test_wrong_obs_site():
    loss = FGANLoss("js", mlp(), obs_site="data")
    with pytest.raises(ValueError, match=r"observation site 'data'.*\['z', 'x'\]"):
        _step(loc_model, torch.randn(4, 1), loss)


def test_unobserved_site():
    def model(x=None):
        with pyro.plate("data", 4):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            return pyro.sample("x", dist.Delta(z, event_dim=1), obs=x)

    with pytest.raises(ValueError, match="'x' to be observed"):
        _step(model, None)


@pytest.mark.parametrize("family", ["Bernoulli", "Poisson"])
def test_non_reparameterized_observation(family):
    def model(x):
        rate = pyro.param("rate", lambda: torch.tensor(0.5))
        fn = dist.Bernoulli(probs=rate) if family == "Bernoulli" else dist.Poisson(rate)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("x", fn.expand([1]).to_event(1), obs=x)

    with pytest.raises(ValueError, match=f"reparameterized observation.*{family}"):
        _step(model, torch.ones(4, 1))


def test_data_shape_differs_from_the_generator_output():
    with pytest.raises(ValueError, match=r"generator's output shape \(8, 1\), actual \(8, 2\)"):
        _step(loc_model, torch.randn(8, 2), FGANLoss("js", mlp(2)))


def test_non_finite_data_lists_rows():
    x = torch.randn(8, 1)
    x[2, 0], x[5, 0] = math.nan, math.inf
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[2, 5\];"):
        _step(loc_model, x)
    x = torch.full((12, 1), -math.inf)
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] \.\.\."):
        _step(loc_model, x)


@pytest.mark.parametrize("critic", [lambda x: x, None, "critic", torch.nn.Linear(1, 1).weight])
def test_critic_must_be_a_module(critic):
    with pytest.raises(ValueError, match="torch.nn.Module"):
        FGANLoss("js", critic)


@pytest.mark.parametrize("critic_steps", [0, -1, 1.5, "3", None])
def test_critic_steps_must_be_a_positive_int(critic_steps):
    with pytest.raises(ValueError, match="critic_steps"):
        FGANLoss("js", mlp(), critic_steps=critic_steps)


@pytest.mark.parametrize("objective", ["minimax", "heuristic", ""])
def test_unknown_generator_objective(objective):
    with pytest.raises(ValueError, match="nonsaturating.*saturating"):
        FGANLoss("js", mlp(), generator_objective=objective)


def test_unknown_divergence():
    with pytest.raises(ValueError, match="Unknown divergence 'wgan'.*js"):
        FGANLoss("wgan", mlp())


def test_kl_overflow_raises_and_leaves_parameters_unchanged():
    def model32(x):
        loc = pyro.param("loc", lambda: torch.zeros(1, dtype=torch.float32))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(1, dtype=torch.float32), 1.0).to_event(1))
            return pyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)

    critic = torch.nn.Linear(1, 1).float()
    with torch.no_grad():
        critic.weight.zero_()
        critic.bias.zero_()
    loss = FGANLoss("kl", critic)
    svi = SVI(model32, guide, Adam({"lr": 1e-2}), loss)
    x = torch.randn(64, 1, dtype=torch.float32)
    for _ in range(2):
        assert all(math.isfinite(v) for v in svi.step(x))
    with torch.no_grad():
        critic.weight.fill_(1e3)
    c_before, loc_before = snapshot(critic), pyro.param("loc").detach().clone()
    with pytest.raises(TrainingDivergedError, match=r"(?s)at step 2 .*overflow") as info:
        svi.step(x)
    assert "exp(v - 1)" in str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert unchanged(c_before, critic)
    assert torch.equal(pyro.param("loc").detach(), loc_before)
    assert loss.step == 2
