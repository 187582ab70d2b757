"""BiGANLoss, the latent helpers and JointCritic: hand-derived gradients, the reduction to an
ordinary GAN, the linear-Gaussian inverse, every divergence through SVI.step, and every error."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from bayesgan import divergences, latent
from bayesgan.infer import BiGANLoss, FGANLoss
from bayesgan.infer.bigan import _FlatPairs, _flatten
from bayesgan.nn import JointCritic, QuadraticCritic
from bayesgan.penalties import R1, GeneratorGradientPenalty, GradientPenalty

from helpers import check_valid_steps, snapshot, unchanged

pytestmark = pytest.mark.usefixtures("float64")

DIVERGENCES = sorted({divergences.get(n).name for n in divergences.names()})
W_TRUE = [[1.0, 0.5], [-0.3, 0.8]]
B_TRUE = [1.0, -1.0]


def make_model(G, latent_dim=2):
    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([latent_dim]).to_event(1))
            return pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    return model


def delta_guide(E):
    def guide(x):
        pyro.module("encoder", E)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(E(x), event_dim=1))

    return guide


def normal_guide(E):
    """z ~ Normal(mu(x), softplus(s(x))): E outputs [mu, s]."""

    def guide(x):
        pyro.module("encoder", E)
        loc, raw = E(x).chunk(2, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, torch.nn.functional.softplus(raw)).to_event(1))

    return guide


class IgnoresZ(torch.nn.Module):
    def __init__(self, D):
        super().__init__()
        self.D = D

    def forward(self, x, z):
        return self.D(x)


def small_mlp(dim, out=1, width=8):
    return torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(), torch.nn.Linear(width, out))


# -- the two objectives, by hand ---------------------------------------------------------------
@pytest.mark.parametrize("divergence", ["gan", "kl", "reverse_kl"])
@pytest.mark.parametrize("objective", ["nonsaturating", "saturating"])
def test_gradients_match_the_hand_written_objectives(divergence, objective):
    """Critic: grad of L_D with both pairs detached. Generator and encoder: grad of L_GE, the
    flipped-label (or minimax) objective, through the critic."""
    G, E, critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), JointCritic.mlp(2, 2, width=8)
    x, z_prior = torch.randn(16, 2) + 1.0, torch.randn(16, 2)
    model = poutine.condition(make_model(G), data={"z": z_prior})
    loss = BiGANLoss(critic, divergence=divergence, generator_objective=objective)
    loss.loss_and_grads(model, delta_guide(E), x)

    d = divergences.get(divergence)
    z_enc, x_gen = E(x), G(z_prior)
    critic_loss = -d.activation(critic(x, z_enc.detach())).mean()
    critic_loss = critic_loss + d.f_star_activation(critic(x_gen.detach(), z_prior)).mean()
    v_enc, v_gen = critic(x, z_enc), critic(x_gen, z_prior)
    if objective == "saturating":
        encoder_loss = d.activation(v_enc).mean()
        generator_loss = encoder_loss - d.f_star_activation(v_gen).mean()
    else:
        encoder_loss = d.f_star_activation(v_enc).mean()
        generator_loss = encoder_loss - d.activation(v_gen).mean()
    players = [(critic, critic_loss), (G, generator_loss), (E, generator_loss)]
    for module, objective_loss in players:
        params = list(module.parameters())
        want = torch.autograd.grad(objective_loss, params, retain_graph=True)
        for p, g in zip(params, want):
            assert torch.allclose(p.grad, g, rtol=1e-12, atol=1e-15)
    assert loss.last["critic_loss"] == pytest.approx(critic_loss.item(), rel=1e-13)
    assert loss.last["generator_loss"] == pytest.approx(generator_loss.item(), rel=1e-13)
    assert loss.last["encoder_loss"] == pytest.approx(encoder_loss.item(), rel=1e-13)
    if objective == "saturating":  # minimax: the players minimize the critic's objective
        assert loss.last["generator_loss"] == pytest.approx(loss.last["divergence"], rel=1e-13)


def test_gan_nonsaturating_is_flipped_label_bce():
    """For "gan": L_GE = -log D(G(z), z) - log(1 - D(x, E(x))) with D = sigmoid(V)."""
    G, E, critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), JointCritic.mlp(2, 2, width=8)
    x, z_prior = torch.randn(8, 2), torch.randn(8, 2)
    loss = BiGANLoss(critic)
    loss.loss(poutine.condition(make_model(G), data={"z": z_prior}), delta_guide(E), x)
    with torch.no_grad():
        d_real, d_fake = torch.sigmoid(critic(x, E(x))), torch.sigmoid(critic(G(z_prior), z_prior))
        want = -torch.log(d_fake).mean() - torch.log1p(-d_real).mean()
    assert loss.last["generator_loss"] == pytest.approx(want.item(), rel=1e-12)


def test_the_fake_pair_takes_z_from_the_prior_and_other_guide_sites_are_replayed():
    """The model's z is drawn afresh (not the encoder's); another guide site (a per-row scale)
    is replayed into the model."""
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x, z):
            seen.append((x.detach().clone(), z.detach().clone()))
            return self.w * (x - z).sum(-1)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0).expand([1]).to_event(1))
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            return pyro.sample("x", dist.Delta(scale * z, event_dim=1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("scale", dist.Delta(torch.full_like(x, 3.0), event_dim=1))
            pyro.sample("z", dist.Delta(x + 100.0, event_dim=1))

    x = torch.randn(64, 1)
    BiGANLoss(Recorder()).loss(model, guide, x)
    (x_real, z_enc), (x_fake, z_fake) = seen
    assert torch.equal(x_real, x) and torch.equal(z_enc, x + 100.0)
    assert torch.equal(x_fake, 3.0 * z_fake)
    assert z_fake.abs().max() < 10.0 and z_fake.std() > 0.5  # N(0, 1), not the encoder's codes


def test_stochastic_encoder_gets_gradients_for_location_and_scale():
    G, E = torch.nn.Linear(2, 2), torch.nn.Linear(2, 4)
    loss = BiGANLoss(JointCritic.mlp(2, 2, width=8))
    loss.loss_and_grads(make_model(G), normal_guide(E), torch.randn(16, 2))
    assert E.weight.grad[:2].abs().sum() > 0 and E.weight.grad[2:].abs().sum() > 0


# -- the reduction to an ordinary GAN ----------------------------------------------------------
@pytest.mark.parametrize("objective", ["nonsaturating", "saturating"])
@pytest.mark.parametrize("guide_kind", ["delta", "normal"])
def test_critic_ignoring_z_reduces_to_fganloss_with_the_guide_blocked(guide_kind, objective):
    """BiGANLoss with V(x, z) = D(x) and FGANLoss with D on the same model with the encoder's
    guide hidden (poutine.block: z from the prior, an ordinary GAN): same batch, same seed,
    identical critic and generator gradients and critic loss; the generator losses differ by
    the encoder's term, which gives the encoder no gradient."""
    G, D = torch.nn.Linear(2, 2), small_mlp(2)
    E = torch.nn.Linear(2, 2) if guide_kind == "delta" else torch.nn.Linear(2, 4)
    guide = delta_guide(E) if guide_kind == "delta" else normal_guide(E)
    model, x = make_model(G), torch.randn(32, 2) + 1.0

    def grads(loss, guide):
        for p in [*G.parameters(), *D.parameters(), *E.parameters()]:
            p.grad = None
        pyro.set_rng_seed(7)
        loss.loss_and_grads(model, guide, x)
        return [p.grad.clone() for p in [*G.parameters(), *D.parameters()]], dict(loss.last)

    fgan_grads, fgan = grads(FGANLoss("js", D, generator_objective=objective), poutine.block(guide))
    bigan_grads, bigan = grads(BiGANLoss(IgnoresZ(D), divergence="js", generator_objective=objective), guide)
    for a, b in zip(fgan_grads, bigan_grads):
        assert torch.equal(a, b)
    assert all(p.grad is None for p in E.parameters())
    assert bigan["critic_loss"] == fgan["critic_loss"]
    assert bigan["generator_loss"] == pytest.approx(fgan["generator_loss"] + bigan["encoder_loss"], rel=1e-14)


def test_blocked_guide_is_an_error_that_points_to_fganloss():
    loss = BiGANLoss(JointCritic.mlp(2, 2, width=8))
    guide = poutine.block(delta_guide(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"guide to sample the latent site 'z', actual sample sites \[\].*FGANLoss"):
        loss.loss(make_model(torch.nn.Linear(2, 2)), guide, torch.randn(4, 2))


# -- the linear-Gaussian model: the encoder learns the inverse ---------------------------------
@pytest.fixture(scope="module")
def linear_gaussian():
    """x = W z + b with G and E linear, both trained from PyTorch's initialization, on data
    from W_TRUE, B_TRUE. Quadratic joint critic, zero-centred gradient penalty on the joint.
    1000 steps, batch 256: about 4 s on one thread."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    W, b = torch.tensor(W_TRUE), torch.tensor(B_TRUE)
    G, E = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model, guide = make_model(G), delta_guide(E)
    loss = BiGANLoss(QuadraticCritic(4, zero_init=False), penalty=GradientPenalty(1.0, center=0.0))
    svi = SVI(model, guide, Adam({"lr": 1e-2, "betas": (0.5, 0.999)}), loss)
    for _ in range(1000):
        svi.step(torch.randn(256, 2) @ W.T + b)
    data = torch.randn(5000, 2) @ W.T + b
    report = latent.latent_report(model, guide, data)
    yield G, E, model, guide, data, report
    torch.set_default_dtype(previous)


def test_linear_encoder_inverts_the_generator(linear_gaussian):
    """Measured (seed 0): E(G(z)) MSE 6.0e-4, G(E(x)) MSE 6.4e-4, max |E.W - G.W^-1| 0.029,
    max |E.b + G.W^-1 G.b| 0.050; seeds 0-4: at most 3.4e-3, 3.7e-3, 0.031, 0.097. Untrained:
    MSEs about 1."""
    G, E, model, guide, data, report = linear_gaussian
    assert report[latent.KEY_CYCLE_MSE] < 0.02
    assert report[latent.KEY_RECONSTRUCTION_MSE] < 0.02
    with torch.no_grad():
        z = torch.randn(5000, 2)
        assert (E(G(z)) - z).pow(2).mean() < 0.02
        assert (G(E(data)) - data).pow(2).mean() < 0.02
        assert torch.allclose(E.weight, torch.linalg.inv(G.weight), atol=0.1)
        assert torch.allclose(E.bias, -torch.linalg.inv(G.weight) @ G.bias, atol=0.2)


def test_encoder_codes_match_the_prior_moments(linear_gaussian):
    """Measured (seed 0): ||mean|| 0.029, ||Cov - I||_F 0.028; seeds 0-4: at most 0.044, 0.084
    (the sampling error of 5000 codes is about 0.02)."""
    G, E, model, guide, data, report = linear_gaussian
    assert report[latent.KEY_MEAN_ERROR] < 0.15
    assert report[latent.KEY_COV_ERROR] < 0.25
    with torch.no_grad():
        codes = latent.encode(guide, data)
    assert torch.allclose(codes.mean(0), torch.zeros(2), atol=0.15)
    assert torch.allclose(torch.cov(codes.T), torch.eye(2), atol=0.2)


# -- every divergence through SVI.step ---------------------------------------------------------
@pytest.mark.parametrize("guide_kind", ["delta", "normal"])
@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_valid_models(divergence, guide_kind):
    G = torch.nn.Linear(2, 2)
    E = torch.nn.Linear(2, 2) if guide_kind == "delta" else torch.nn.Linear(2, 4)
    guide = delta_guide(E) if guide_kind == "delta" else normal_guide(E)
    critic = JointCritic.mlp(2, 2, width=8)
    loss = BiGANLoss(critic, divergence=divergence, critic_steps=2)
    svi = SVI(make_model(G), guide, Adam({"lr": 1e-3}), loss)
    e_before = snapshot(E)
    check_valid_steps(svi, loss, make_model(G), guide, torch.nn.ModuleList([G, E]), critic,
                      torch.randn(8, 2) + 0.5, critic_steps=2)
    assert not unchanged(e_before, E)


@pytest.mark.parametrize("penalty", [R1(1.0), GradientPenalty(1.0)])
def test_penalties_see_the_joint_pairs(penalty):
    """For V(x, z) = a.x + c.z the input gradient is [a, c] everywhere: R1 = gamma / 2 (|a|^2 +
    |c|^2); the two-sided GP = (|[a, c]| - 1)^2."""
    critic = JointCritic(torch.nn.Identity(), torch.nn.Identity(), torch.nn.Linear(5, 1))
    loss = BiGANLoss(critic, penalty=penalty)
    loss.loss_and_grads(make_model(torch.nn.Linear(2, 3)), delta_guide(torch.nn.Linear(3, 2)), torch.randn(8, 3))
    norm2 = critic.head.weight.pow(2).sum().item()
    want = 0.5 * norm2 if isinstance(penalty, R1) else (math.sqrt(norm2) - 1.0) ** 2
    assert loss.last["penalty"] == pytest.approx(want, rel=1e-12)
    assert loss.last["critic_loss"] == pytest.approx(-loss.last["divergence"] + want, rel=1e-12)
    assert loss.pair_penalty is penalty and loss.penalty is None


def test_flattened_pairs_give_the_critic_back():
    critic = JointCritic.conv((2, 5, 7), 3, channels=4, width=8)
    x, z = torch.randn(4, 2, 5, 7), torch.randn(4, 3)
    view = _FlatPairs(critic, x.shape[1:], z.shape[1:])
    assert torch.equal(view(_flatten(x, z)), critic(x, z))


def test_image_pairs_and_a_generator_penalty_through_svi():
    G = torch.nn.Sequential(torch.nn.Linear(3, 2 * 4 * 4), torch.nn.Unflatten(1, (2, 4, 4)))
    E = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, 3))

    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            return pyro.sample("x", dist.Delta(G(z), event_dim=3), obs=x)

    loss = BiGANLoss(JointCritic.conv((2, 4, 4), 3, channels=4, width=8), penalty=R1(1.0),
                     generator_penalty=GeneratorGradientPenalty(0.1))
    g_before, e_before = snapshot(G), snapshot(E)
    out = SVI(model, delta_guide(E), Adam({"lr": 1e-2}), loss).step(torch.randn(6, 2, 4, 4))
    assert all(math.isfinite(v) for v in out)
    assert loss.last["generator_penalty"] > 0 and loss.last["penalty"] > 0
    assert not unchanged(g_before, G) and not unchanged(e_before, E)


def test_repr():
    assert repr(BiGANLoss(IgnoresZ(small_mlp(2)), critic_steps=2, latent_site="w")) == (
        "BiGANLoss(divergence=GAN(), critic_steps=2, generator_objective='nonsaturating', latent_site='w')"
    )


# -- errors ------------------------------------------------------------------------------------
def _loss_of(model, guide, x):
    return BiGANLoss(JointCritic.mlp(2, 2, width=8)).loss(model, guide, x)


def test_guide_without_the_latent_site():
    with pytest.raises(ValueError, match=r"guide to sample the latent site 'z', actual sample sites \[\]"):
        _loss_of(make_model(torch.nn.Linear(2, 2)), lambda x: None, torch.randn(4, 2))


def test_model_without_the_latent_site():
    G = torch.nn.Linear(2, 2)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            return pyro.sample("x", dist.Delta(G(w), event_dim=1), obs=x)

    match = r"model to sample the latent site 'z', actual sample sites \['w', 'x'\].*latent_site="
    with pytest.raises(ValueError, match=match):
        _loss_of(model, delta_guide(torch.nn.Linear(2, 2)), torch.randn(4, 2))


def test_guide_latent_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"guide's 'z' to have the model's shape \(4, 2\), actual \(4, 3\)"):
        _loss_of(make_model(torch.nn.Linear(2, 2)), delta_guide(torch.nn.Linear(2, 3)), torch.randn(4, 2))


def test_guide_latent_not_reparameterized():
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(0.5).expand([2]).to_event(1))

    with pytest.raises(ValueError, match=r"reparameterized guide site 'z'.*Independent"):
        _loss_of(make_model(torch.nn.Linear(2, 2)), guide, torch.randn(4, 2))


@pytest.mark.parametrize("latent_site", ["x", None, 3])
def test_latent_site_must_be_a_name_other_than_the_observation(latent_site):
    with pytest.raises(ValueError, match=r"latent_site to be a site name other than obs_site 'x'"):
        BiGANLoss(JointCritic.mlp(2, 2, width=8), latent_site=latent_site)


@pytest.mark.parametrize("critic", [lambda x, z: x, None])
def test_critic_must_be_a_module(critic):
    with pytest.raises(ValueError, match="torch.nn.Module"):
        BiGANLoss(critic)


# -- the latent helpers, against closed forms --------------------------------------------------
def _scaled_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        return pyro.sample("x", dist.Delta(2.0 * z, event_dim=1), obs=x)


def _quarter_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(x / 4.0, event_dim=1))


def test_latent_report_closed_form():
    """x = 2 z and E(x) = x / 4: G(E(x)) = x / 2, E(G(z)) = z / 2, codes x / 4. The prior's
    draws for the cycle are fixed by conditioning the model (which also fixes its z against
    the encoder's, so the reconstruction is checked on the unconditioned model)."""
    x, z = torch.randn(50, 2) * 3.0 + 1.0, torch.randn(50, 2)
    report = latent.latent_report(_scaled_model, _quarter_guide, x)
    cycle = latent.latent_report(poutine.condition(_scaled_model, data={"z": z}), _quarter_guide, x)
    mse = (x / 2).pow(2).mean().item()
    assert report[latent.KEY_RECONSTRUCTION_MSE] == pytest.approx(mse, rel=1e-12)
    assert report[latent.KEY_RECONSTRUCTION_RELATIVE_MSE] == pytest.approx(mse / x.var(0).mean().item(), rel=1e-12)
    assert cycle[latent.KEY_CYCLE_MSE] == pytest.approx((z / 2).pow(2).mean().item(), rel=1e-12)
    assert report[latent.KEY_MEAN_ERROR] == pytest.approx((x / 4).mean(0).norm().item(), rel=1e-12)
    cov_error = (torch.cov(x.T) / 16 - torch.eye(2)).norm().item()
    assert report[latent.KEY_COV_ERROR] == pytest.approx(cov_error, rel=1e-12)
    assert report[latent.KEY_COV_RELATIVE_ERROR] == pytest.approx(cov_error / math.sqrt(2), rel=1e-12)
    assert all(type(v) is float for v in report.values())


def test_latent_report_in_batches_and_against_a_full_covariance_prior():
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), cov))
            return pyro.sample("x", dist.Delta(2.0 * z, event_dim=1), obs=x)

    x = torch.randn(7, 2)
    whole = latent.latent_report(model, _quarter_guide, x)
    batched = latent.latent_report(model, _quarter_guide, x, batch_size=3)
    for key in (latent.KEY_RECONSTRUCTION_MSE, latent.KEY_MEAN_ERROR, latent.KEY_COV_ERROR):
        assert batched[key] == pytest.approx(whole[key], rel=1e-12)
    assert whole[latent.KEY_COV_ERROR] == pytest.approx((torch.cov(x.T) / 16 - cov).norm().item(), rel=1e-12)


def test_encode_and_reconstruct_with_a_stochastic_guide():
    E = torch.nn.Linear(2, 4)
    guide, x = normal_guide(E), torch.randn(10, 2)
    with torch.no_grad():
        loc = E(x)[:, :2]
    assert torch.equal(latent.encode(guide, x, mean=True), loc)
    assert not torch.equal(latent.encode(guide, x), loc)
    assert torch.equal(latent.reconstruct(_scaled_model, guide, x, mean=True), 2.0 * loc)


def test_latent_helper_errors():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"guide to sample 'w', actual sample sites \['z'\]"):
        latent.encode(_quarter_guide, x, latent_site="w")
    with pytest.raises(ValueError, match=r"model to have the site 'y', actual sample sites \['z', 'x'\]"):
        latent.reconstruct(_scaled_model, _quarter_guide, x, obs_site="y")
    with pytest.raises(ValueError, match=r"model to sample 'z', actual sample sites \['w', 'x'\]"):
        latent.latent_report(_renamed_model, _quarter_guide, x)
    with pytest.raises(ValueError, match=r"at least 2 rows, actual 1"):
        latent.latent_report(_scaled_model, _quarter_guide, x[:1])
    with pytest.raises(ValueError, match=r"batch_size to be an int >= 1 or None, actual 2.5"):
        latent.latent_report(_scaled_model, _quarter_guide, x, batch_size=2.5)


def _renamed_model(x):
    with pyro.plate("data", x.shape[0]):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        return pyro.sample("x", dist.Delta(2.0 * w, event_dim=1), obs=x)


# -- JointCritic -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 5), (2, 1, 1)])
def test_conv_joint_critic_shapes(shape):
    critic = JointCritic.conv(shape, 4, channels=4, width=8)
    assert critic(torch.randn(3, *shape), torch.randn(3, 4)).shape == (3, 1)


def test_mlp_joint_critic_depth_and_batch_of_one():
    critic = JointCritic.mlp(3, 2, width=8, depth=2, activation="tanh")
    assert sum(isinstance(m, torch.nn.Linear) for m in critic.x_net.modules()) == 3
    assert critic(torch.randn(1, 3), torch.randn(1, 2)).shape == (1, 1)


def test_joint_critic_errors():
    with pytest.raises(ValueError, match="Expected z_net to be a torch.nn.Module, actual function"):
        JointCritic(torch.nn.Identity(), lambda z: z, torch.nn.Identity())
    with pytest.raises(ValueError, match=r"image_shape as \(C, H, W\), actual \(8, 8\)"):
        JointCritic.conv((8, 8), 2)
    with pytest.raises(ValueError, match=r"image_shape as \(C, H, W\), actual 64"):
        JointCritic.conv(64, 2)
    with pytest.raises(ValueError, match=r"channels to be an int >= 1, actual 0"):
        JointCritic.conv((1, 8, 8), 2, channels=0)
    with pytest.raises(ValueError, match="activation"):
        JointCritic.mlp(2, 2, activation="gelu")


# -- random generator weights beside the encoder -----------------------------------------------
def test_random_generator_weights_get_their_kl_term_beside_the_encoder():
    """A guide over the generator's random bias and the encoder's z: the KL term is the bias's
    analytic KL(N(m, s^2) || N(0, 1)) alone (z is inside the data plate), and KL / N joins the
    generator's loss. Then two passes per step (num_masks=2) through SVI move every player."""
    from bayesgan.models import GeneratorModel, WeightGuide, make_stochastic

    G, E, critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), JointCritic.mlp(2, 2, width=8)
    model = GeneratorModel(G, latent_dim=2)
    weights = WeightGuide(model, init_values=make_stochastic(G, "bias"))
    encoder = delta_guide(E)

    def guide(x):
        weights(x)
        encoder(x)

    x, records = torch.randn(16, 2), []
    for n in (100, 200):
        loss = BiGANLoss(critic, num_data=n)
        pyro.set_rng_seed(5)
        loss.loss(model, guide, x)
        records.append(loss.last)
    m, s = pyro.param("weights.generator.bias.loc"), pyro.param("weights.generator.bias.scale")
    kl = (-torch.log(s) + (s**2 + m**2) / 2 - 0.5).sum().item()
    first, second = records
    assert weights.sites.keys() == {"generator.bias"}
    assert first["kl"] == pytest.approx(kl, rel=1e-12) and second["kl"] == first["kl"]
    assert first["encoder_loss"] == second["encoder_loss"]
    assert first["generator_loss"] - second["generator_loss"] == pytest.approx(kl / 200, rel=1e-9)

    loss = BiGANLoss(critic, num_masks=2, num_data=100)
    before = [snapshot(E), m.detach().clone(), snapshot(critic)]
    out = SVI(model, guide, Adam({"lr": 1e-2}), loss).step(x)
    assert all(math.isfinite(v) for v in out)
    assert not unchanged(before[0], E) and not unchanged(before[2], critic)
    assert not torch.equal(pyro.param("weights.generator.bias.loc").detach(), before[1])
