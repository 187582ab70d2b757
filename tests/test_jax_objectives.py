"""Wasserstein, MMD and relativistic pairs and the penalties on the JAX side: one step equals
the torch side's svi.step (same z, data and critic weights, SGD, float64), penalties equal the
torch ones, and every ValueError."""

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("numpyro")
pytest.importorskip("optax")
pytest.importorskip("flax")

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import optax  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as pdist  # noqa: E402
import torch  # noqa: E402
from pyro.infer import SVI  # noqa: E402
from pyro.optim import SGD  # noqa: E402

from bayesgan import kernels as tkernels  # noqa: E402
from bayesgan import penalties as tpen  # noqa: E402
from bayesgan.infer import FGANLoss, MMDLoss, RelativisticLoss, WassersteinLoss  # noqa: E402
from bayesgan.jax import FGAN, MMD, Relativistic, Wasserstein  # noqa: E402
from bayesgan.jax import penalties as jpen  # noqa: E402
from bayesgan.jax.mmd import RBFMixture, mmd2  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")

Z = np.array([[-1.0, 0.3], [0.25, -0.7], [0.5, 1.1], [2.0, 0.0], [-0.4, -1.2]])
X = np.array([[1.5, 0.2], [-0.5, 0.9], [0.0, -0.3], [3.0, 1.0], [0.7, -1.4]])


def torch_critic(out=1, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, out))


def flax_params(tcritic):
    return {f"layers_{i}": {"kernel": jnp.asarray(tcritic[i].weight.detach().numpy().T),
                            "bias": jnp.asarray(tcritic[i].bias.detach().numpy())} for i in (0, 2)}


def tmodel(x):
    loc = pyro.param("loc", lambda: torch.tensor([0.3, -0.2]))
    scale = pyro.param("scale", lambda: torch.tensor([1.2, 0.8]))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pdist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=torch.tensor(Z))
        pyro.sample("x", pdist.Delta(loc + scale * torch.tanh(z), event_dim=1), obs=x)


def jmodel(x):
    loc = numpyro.param("loc", jnp.array([0.3, -0.2]))
    scale = numpyro.param("scale", jnp.array([1.2, 0.8]))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=jnp.asarray(Z))
        numpyro.sample("x", ndist.Delta(loc + scale * jnp.tanh(z), event_dim=1), obs=x)


def compare_one_step(tloss, objective, tcritic, out=1):
    """One torch svi.step against one JAX step from the same point; returns the max difference."""
    before = flax_params(tcritic) if tcritic is not None else None
    svi = SVI(tmodel, lambda x: None, SGD({"lr": 0.05}), tloss)
    c_loss, g_loss = svi.step(torch.tensor(X))
    critic = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(out)]) if tcritic is not None else None
    state = objective.init(jax.random.key(0), jmodel, critic, jnp.asarray(X))
    if tcritic is not None:
        params = before
        state = state._replace(critic_params=params, critic_opt_state=objective.critic_optimizer.init(params))
    state, info = jax.jit(objective.step)(jax.random.key(1), state, jnp.asarray(X))
    assert float(info.critic_loss) == pytest.approx(c_loss, rel=1e-12, abs=1e-14)
    assert float(info.generator_loss) == pytest.approx(g_loss, rel=1e-12)
    assert float(info.divergence) == pytest.approx(tloss.last["divergence"], rel=1e-12)
    for key in ("penalty", "generator_penalty"):
        if key in tloss.last:
            assert float(getattr(info, key)) == pytest.approx(tloss.last[key], rel=1e-12, abs=1e-14)
    for name in ("loc", "scale"):
        np.testing.assert_allclose(state.generator_params[name], pyro.param(name).detach().numpy(), rtol=1e-12)
    if tcritic is not None:
        for a, b in zip(jax.tree.leaves(state.critic_params), jax.tree.leaves(flax_params(tcritic))):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    return info


def sgd():
    return optax.sgd(0.05)


@pytest.mark.parametrize("penalty", ["r1", "r2", "wgan_div", "output", "r1+r2"])
def test_wasserstein_step_equals_torch(penalty):
    tp, jp = {
        "r1": (tpen.R1(2.0), jpen.R1(2.0)),
        "r2": (tpen.R2(2.0), jpen.R2(2.0)),
        "wgan_div": (tpen.WGANDiv(), jpen.WGANDiv()),
        "output": (tpen.OutputPenalty(0.3), jpen.OutputPenalty(0.3)),
        "r1+r2": (tpen.R1(1.0) + tpen.R2(3.0), jpen.R1(1.0) + jpen.R2(3.0)),
    }[penalty]
    tcritic = torch_critic()
    tloss = WassersteinLoss(tcritic, penalty=tp, critic_steps=1)
    objective = Wasserstein(generator_optimizer=sgd(), critic_optimizer=sgd(), penalty=jp, critic_steps=1)
    info = compare_one_step(tloss, objective, tcritic)
    assert float(info.penalty) > 0


def test_gradient_penalty_equals_torch(monkeypatch):
    """WGAN-GP at fixed interpolation weights (torch.rand patched to 0.5; the JAX key None)."""
    tcritic = torch_critic()
    params = flax_params(tcritic)
    jcritic = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(1)])
    fn = lambda x: jcritic.apply({"params": params}, x)  # noqa: E731
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.full(shape, 0.5, dtype=kw.get("dtype")))
    for kwargs in ({}, {"one_sided": True}, {"center": 0.0}):
        want = tpen.GradientPenalty(10.0, **kwargs)(tcritic, torch.tensor(X), torch.tensor(Z)).item()
        got = float(jpen.GradientPenalty(10.0, **kwargs)(None, fn, jnp.asarray(X), jnp.asarray(Z)))
        assert got == pytest.approx(want, rel=1e-12)
    # With a key the interpolation weights are uniform draws: keyed, reproducible.
    a = jpen.GradientPenalty(10.0)(jax.random.key(0), fn, jnp.asarray(X), jnp.asarray(Z))
    b = jpen.GradientPenalty(10.0)(jax.random.key(0), fn, jnp.asarray(X), jnp.asarray(Z))
    assert float(a) == float(b)


def test_relativistic_step_equals_torch():
    tcritic = torch_critic()
    compare_one_step(RelativisticLoss(tcritic), Relativistic(generator_optimizer=sgd(), critic_optimizer=sgd()), tcritic)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd_without_critic_step_equals_torch(estimator):
    info = compare_one_step(MMDLoss(estimator=estimator), MMD(estimator=estimator, generator_optimizer=sgd()), None)
    assert float(info.critic_loss) == 0.0


def test_mmd_with_critic_step_equals_torch():
    tcritic = torch_critic(out=3)
    kernel = tkernels.RBFMixture((1.0, 0.1))
    compare_one_step(MMDLoss(kernel, critic=tcritic), MMD(RBFMixture((1.0, 0.1)), generator_optimizer=sgd(),
                                                          critic_optimizer=sgd()), tcritic, out=3)


@pytest.mark.parametrize("wrt", ["parameters", "samples"])
def test_generator_gradient_penalty_step_equals_torch(wrt):
    """Double differentiation: lambda ||grad L_G||^2 (parameters) or the samples' variant."""
    tcritic = torch_critic()
    tloss = FGANLoss("js", tcritic, generator_penalty=tpen.GeneratorGradientPenalty(0.7, wrt=wrt))
    objective = FGAN("js", generator_optimizer=sgd(), critic_optimizer=sgd(),
                     generator_penalty=jpen.GeneratorGradientPenalty(0.7, wrt=wrt))
    info = compare_one_step(tloss, objective, tcritic)
    assert float(info.generator_penalty) > 0


def test_mmd2_matches_torch():
    x, y = np.random.default_rng(0).normal(size=(2, 6, 3))
    for estimator in ("biased", "unbiased"):
        want = tkernels.mmd2(torch.tensor(x), torch.tensor(y), tkernels.RBFMixture(), estimator=estimator).item()
        assert float(mmd2(jnp.asarray(x), jnp.asarray(y), RBFMixture(), estimator=estimator)) == pytest.approx(want, rel=1e-12)


def test_weight_clipping_clips_every_leaf():
    params = {"a": jnp.array([-3.0, 0.5]), "b": {"c": jnp.array(2.0)}}
    clipped = jpen.WeightClipping(1.0)(params)
    assert clipped["a"].tolist() == [-1.0, 0.5] and float(clipped["b"]["c"]) == 1.0
    assert repr(jpen.R1(1.0) + jpen.WGANDiv()) == "R1(1.0) + WGANDiv(k=2.0, p=6.0)"
    assert repr(Wasserstein(generator_optimizer=sgd(), critic_optimizer=sgd(), penalty=None,
                            constraint=jpen.WeightClipping(0.5))).startswith("Wasserstein(penalty=None")


@pytest.mark.parametrize("make, match", [
    (lambda: jpen.GradientPenalty(-1.0), "weight >= 0"),
    (lambda: jpen.R1(-1.0), "gamma >= 0"),
    (lambda: jpen.WGANDiv(k=-1.0), "k >= 0"),
    (lambda: jpen.WGANDiv(p=0.0), "p > 0"),
    (lambda: jpen.OutputPenalty(-0.1), "weight >= 0"),
    (lambda: jpen.WeightClipping(0.0), "clip > 0"),
    (lambda: jpen.GeneratorGradientPenalty(-1.0), "weight >= 0"),
    (lambda: jpen.GeneratorGradientPenalty(1.0, wrt="z"), "wrt in"),
    (lambda: MMD(estimator="exact", generator_optimizer=sgd()), "estimator 'biased' or 'unbiased'"),
    (lambda: RBFMixture(()), "positive inverse bandwidths"),
    (lambda: mmd2(jnp.zeros((3, 2)), jnp.zeros((3, 2)), RBFMixture(), estimator="x"), "estimator 'unbiased' or"),
    (lambda: mmd2(jnp.zeros((3, 2)), jnp.zeros((3, 1)), RBFMixture()), "samples of one shape"),
    (lambda: mmd2(jnp.zeros((1, 2)), jnp.zeros((3, 2)), RBFMixture()), "at least 2 samples"),
    (lambda: MMD(generator_optimizer=sgd(), critic_steps=2).init(jax.random.key(0), jmodel, None, jnp.asarray(X)),
     "critic_steps=1 without a critic"),
    (lambda: Relativistic(generator_optimizer=sgd(), critic_optimizer=sgd(), constraint=1.0), "constraint to be callable"),
])
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
