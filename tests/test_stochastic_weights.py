"""Partially stochastic generators: make_stochastic, WeightGuide, the KL term, num_masks."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Predictive
from pyro.nn import PyroModule

from bayesgan.infer import FGANLoss, WassersteinLoss
from bayesgan.models import GeneratorModel, WeightGuide, make_stochastic, prior_guide
from bayesgan.optim import Adam
from bayesgan.penalties import R2, GradientPenalty, Lazy

from helpers import check_valid_steps, snapshot

pytestmark = pytest.mark.usefixtures("float64")


def _net():
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _critic():
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _stochastic_model(include="2.*", prior_scale=0.5, scale=None):
    net = _net()
    init = make_stochastic(net, include, prior_scale=prior_scale)
    model = GeneratorModel(net, latent_dim=2, scale=scale)
    return net, model, WeightGuide(model, init_values=init, init_scale=0.1)


# -- make_stochastic ------------------------------------------------------------------------
def test_make_stochastic_replaces_the_chosen_parameters_by_priors():
    net = _net()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    init = make_stochastic(net, ["2.weight", "*.bias"], prior_scale=0.3, name="G")
    assert isinstance(net, PyroModule)
    assert sorted(init) == ["G.0.bias", "G.2.bias", "G.2.weight"]
    assert [k for k, _ in net.named_parameters()] == ["0.weight"]
    for site, value in init.items():
        assert torch.equal(value, before[site[2:]])
    trace = poutine.trace(net).get_trace(torch.zeros(3, 2))
    prior = trace.nodes["G.2.weight"]["fn"]
    assert prior.event_shape == (2, 8) and prior.batch_shape == ()
    assert torch.equal(prior.base_dist.loc, torch.zeros(2, 8))
    assert torch.equal(prior.base_dist.scale, torch.full((2, 8), 0.3))
    assert trace.nodes["G.0.weight"]["type"] == "param"


def test_make_stochastic_centered_prior_sits_on_the_current_weights():
    net = _net()
    last = net[2].weight.detach().clone()
    make_stochastic(net, "2.weight", centered=True)
    prior = poutine.trace(net).get_trace(torch.zeros(1, 2)).nodes["generator.2.weight"]["fn"]
    assert torch.equal(prior.base_dist.loc, last)


def test_random_weights_are_drawn_once_per_batch_not_per_point():
    _, model, _ = _stochastic_model()
    trace = poutine.trace(model).get_trace(num_samples=5)
    site = trace.nodes["generator.2.weight"]
    assert site["cond_indep_stack"] == () and site["value"].shape == (2, 8)


@pytest.mark.parametrize(
    "include, kwargs, match",
    [
        ("9.*", {}, r"match some of the module's parameters, actual none matched; its parameters are \['0.weight'"),
        ([], {}, "Expected include to be a pattern or a list"),
        ([3], {}, "Expected include to be a pattern or a list"),
        ("2.*", {"prior_scale": 0.0}, "Expected prior_scale > 0, actual 0.0"),
    ],
)
def test_make_stochastic_rejects_bad_arguments(include, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_stochastic(_net(), include, **kwargs)


def test_make_stochastic_rejects_non_modules_and_used_pyro_modules():
    with pytest.raises(ValueError, match="Expected a torch.nn.Module, actual str"):
        make_stochastic("net", "*")
    net = _net()
    make_stochastic(net, "2.bias")
    net(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="has not run as a PyroModule yet"):
        make_stochastic(net, "2.weight")


# -- WeightGuide ----------------------------------------------------------------------------
def test_weight_guide_covers_the_weights_and_never_the_latents():
    _, model, guide = _stochastic_model()
    trace = poutine.trace(guide).get_trace(torch.zeros(4, 2))
    assert sorted(trace.stochastic_nodes) == ["generator.2.bias", "generator.2.weight"]
    assert isinstance(trace.nodes["generator.2.weight"]["fn"].base_dist, dist.Normal)
    assert "weights.generator.2.weight.loc" in pyro.get_param_store()


def test_weight_guide_starts_at_the_given_values():
    net = _net()
    init = make_stochastic(net, "2.weight")
    model = GeneratorModel(net, latent_dim=2)
    WeightGuide(model, init_values=init, init_scale=0.2)(num_samples=3)
    assert torch.equal(pyro.param("weights.generator.2.weight.loc").detach(), init["generator.2.weight"])
    assert torch.allclose(pyro.param("weights.generator.2.weight.scale").detach(), torch.full((2, 8), 0.2))


def test_weight_guide_errors():
    model = GeneratorModel(_net(), latent_dim=2)
    with pytest.raises(ValueError, match=r"random weights \(sample sites outside every plate\), actual none"):
        WeightGuide(model)(num_samples=2)
    with pytest.raises(ValueError, match="Expected init_scale > 0"):
        WeightGuide(model, init_scale=-1.0)
    _, model, _ = _stochastic_model("2.bias")
    with pytest.raises(ValueError, match=r"actual extra \['generator.9.bias'\]"):
        WeightGuide(model, init_values={"generator.9.bias": torch.zeros(2)})(num_samples=2)

    def gamma_model(x):
        pyro.sample("w", dist.Gamma(2.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="Expected real-valued random weights"):
        WeightGuide(gamma_model)(torch.zeros(2, 2))


def test_predictive_draws_weights_from_the_guide():
    _, model, guide = _stochastic_model()
    out = Predictive(model, guide=guide, num_samples=6, return_sites=["x", "generator.2.weight"])(num_samples=10)
    assert out["x"].shape == (6, 10, 2)
    weights = out["generator.2.weight"].reshape(6, 2, 8)  # Predictive keeps a plate dim
    assert not torch.equal(weights[0], weights[1])


# -- the KL term ----------------------------------------------------------------------------
def _analytic_kl(loc, scale, prior_loc, prior_scale):
    return (torch.log(prior_scale / scale) + (scale**2 + (loc - prior_loc) ** 2) / (2 * prior_scale**2) - 0.5).sum()


def test_kl_term_equals_the_analytic_kl_and_enters_the_generator_loss_over_n():
    net, model, guide = _stochastic_model(prior_scale=0.5)
    critic, x, n = _critic(), torch.randn(16, 2), 1000
    loss = FGANLoss("js", critic, num_data=n)
    pyro.set_rng_seed(3)
    losses = loss.loss(model, guide, x)
    store = pyro.get_param_store()
    want = sum(
        _analytic_kl(store[f"weights.generator.2.{p}.loc"], store[f"weights.generator.2.{p}.scale"],
                     torch.tensor(0.0), torch.tensor(0.5)).item()
        for p in ("weight", "bias")
    )
    assert loss.last["kl"] == pytest.approx(want, rel=1e-12)
    # The data term alone: the same draws of w and z, with the weights fixed by conditioning.
    pyro.set_rng_seed(3)
    weights = guide(x)
    reference = FGANLoss("js", critic).loss(poutine.condition(model, data=weights), prior_guide, x)
    assert losses[0] == pytest.approx(reference[0], rel=1e-12)
    assert losses[1] == pytest.approx(reference[1] + want / n, rel=1e-12)


def test_without_data_term_the_guide_converges_to_the_prior():
    """A critic whose output ignores its input gives the generator no data gradient: the
    generator's loss is then KL(q || p) / N plus a constant, minimized at q = p."""

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.c.expand(x.shape[0], 1)

    net = torch.nn.Linear(2, 2)
    init = make_stochastic(net, "*", prior_scale=0.7)
    model = GeneratorModel(net, latent_dim=2)
    guide = WeightGuide(model, init_values=init, init_scale=0.05)
    loss = FGANLoss("kl", Constant(), num_data=1)
    svi = SVI(model, guide, Adam({"lr": 0.05}), loss=loss)
    x = torch.randn(8, 2)
    for _ in range(1500):
        svi.step(x)
    for site in ("weight", "bias"):
        loc = pyro.param(f"weights.generator.{site}.loc").detach()
        scale = pyro.param(f"weights.generator.{site}.scale").detach()
        assert loc.abs().max() < 1e-2, site
        assert (scale - 0.7).abs().max() < 1e-2, site
    assert loss.last["kl"] < 1e-3


def test_kl_needs_num_data_and_guide_sites_in_the_model():
    _, model, guide = _stochastic_model()
    loss = FGANLoss("js", _critic())
    with pytest.raises(ValueError, match=r"Expected num_data \(the training set's size\)"):
        loss.loss(model, guide, torch.randn(4, 2))

    def extra_guide(x):
        guide(x)
        pyro.sample("stray", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="guide's site 'stray' in the model too"):
        FGANLoss("js", _critic(), num_data=4).loss(model, extra_guide, torch.randn(4, 2))


def test_local_guide_sites_are_not_weights():
    """A guide over z (inside the data plate) adds no KL term and needs no num_data."""
    model = GeneratorModel(_net(), latent_dim=2)

    def z_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    loss = FGANLoss("js", _critic())
    loss.loss(model, z_guide, torch.randn(4, 2))
    assert "kl" not in loss.last


@pytest.mark.parametrize("critic_steps", [1, 2])
def test_svi_steps_with_random_weights(critic_steps):
    net, model, guide = _stochastic_model(scale=0.1)
    critic, x = _critic(), torch.randn(8, 2)
    loss = FGANLoss("js", critic, critic_steps=critic_steps, num_data=100)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=loss)
    check_valid_steps(svi, loss, model, guide, net, critic, x, critic_steps)
    loc = pyro.param("weights.generator.2.weight.loc")
    before = loc.detach().clone()
    for _ in range(critic_steps):
        svi.step(x)
    assert not torch.equal(before, pyro.param("weights.generator.2.weight.loc").detach())


# -- num_masks ------------------------------------------------------------------------------
def _dropout_model():
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2))
    return net, GeneratorModel(net, latent_dim=2)


def test_num_masks_averages_passes_and_applies_the_penalty_once():
    _, model = _dropout_model()
    critic = _critic()
    x = torch.randn(8, 2)
    penalty = R2(1.0)  # on the fakes, and deterministic: it tells which pass's batch it saw
    pyro.set_rng_seed(5)
    averaged = FGANLoss("kl", critic, num_masks=3, penalty=penalty)
    got = averaged.loss(model, prior_guide, x)
    pyro.set_rng_seed(5)
    single = FGANLoss("kl", critic)
    passes = [single.loss(model, prior_guide, x) for _ in range(3)]
    passes_last = single.last
    assert got[1] == pytest.approx(sum(p[1] for p in passes) / 3, rel=1e-12)
    pyro.set_rng_seed(5)
    first = FGANLoss("kl", critic, penalty=penalty)
    first.loss(model, prior_guide, x)
    assert averaged.last["penalty"] == pytest.approx(first.last["penalty"], rel=1e-12)
    assert got[0] == pytest.approx(sum(p[0] for p in passes) / 3 + first.last["penalty"], rel=1e-12)
    assert len({p[1] for p in passes}) == 3 and passes_last["divergence"] != averaged.last["divergence"]


def test_lazy_penalty_counts_steps_not_passes():
    _, model = _dropout_model()
    lazy = Lazy(GradientPenalty(1.0), every=2)
    loss = WassersteinLoss(_critic(), penalty=lazy, critic_steps=1, num_masks=4)
    for _ in range(3):
        loss.loss(model, prior_guide, torch.randn(4, 2))
    assert lazy.calls == 3


def test_num_masks_with_svi_steps():
    net, model = _dropout_model()
    critic, x = _critic(), torch.randn(8, 2)
    loss = FGANLoss("js", critic, critic_steps=2, num_masks=2)
    svi = SVI(model, prior_guide, Adam({"lr": 1e-2}), loss=loss)
    results = check_valid_steps(svi, loss, model, prior_guide, net, critic, x, 2)
    assert all(math.isfinite(v) for r in results for v in r)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_masks": 0}, "Expected num_masks to be an int >= 1, actual 0"),
        ({"num_masks": 1.5}, "Expected num_masks to be an int >= 1, actual 1.5"),
        ({"num_data": 0}, "Expected num_data to be an int >= 1 or None, actual 0"),
        ({"num_data": 2.0}, "Expected num_data to be an int >= 1 or None, actual 2.0"),
    ],
)
def test_num_masks_and_num_data_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FGANLoss("js", _critic(), **kwargs)


def test_generator_snapshot_helper_sees_only_deterministic_weights():
    net, _, _ = _stochastic_model()
    assert len(snapshot(net)) == 2  # the first layer; the last one is random
