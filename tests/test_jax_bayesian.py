"""The Bayesian side in JAX: MC dropout through flax_module(..., apply_rng=["dropout"]),
partially stochastic weights through random_flax_module(prior={...}) with a guide and the KL
term, Predictive for sampling, and to_inference_data for ArviZ."""

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("numpyro")
pytest.importorskip("optax")
pytest.importorskip("flax")
pytest.importorskip("arviz")

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import optax  # noqa: E402
from numpyro import handlers  # noqa: E402
from numpyro.contrib.module import flax_module, random_flax_module  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402
from numpyro.infer import Predictive  # noqa: E402

from bayesgan.jax import FGAN, to_inference_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")
N_DATA = 50


class DropoutGenerator(nn.Module):
    @nn.compact
    def __call__(self, z):
        h = nn.relu(nn.Dense(32)(z))
        h = nn.Dropout(0.5, deterministic=False)(h)
        return nn.Dense(2)(h)


def dropout_model(x, n=None):
    n = x.shape[0] if x is not None else n
    net = flax_module("generator", DropoutGenerator(), input_shape=(1, 1), apply_rng=["dropout"])
    with numpyro.plate("data", n):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", ndist.Delta(net(z, rngs={"dropout": numpyro.prng_key()}), event_dim=1), obs=x)


GENERATOR = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(2)])
SITE = "generator/layers_2.bias"


def stochastic_model(x, n=None):
    """The last layer's bias random (prior N(0, 1)), every other weight deterministic."""
    n = x.shape[0] if x is not None else n
    net = random_flax_module("generator", GENERATOR, prior={"layers_2.bias": ndist.Normal(0.0, 1.0)}, input_shape=(1, 1))
    with numpyro.plate("data", n):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", ndist.Delta(net(z), event_dim=1), obs=x)


def bias_guide(x, n=None):
    loc = numpyro.param("bias_loc", jnp.array([0.3, -0.2]))
    scale = numpyro.param("bias_scale", jnp.array([0.5, 0.2]), constraint=constraints.positive)
    numpyro.sample(SITE, ndist.Normal(loc, scale).to_event(1))


def critic():
    return nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(1)])


def data(n=16):
    return jnp.asarray(np.random.default_rng(0).normal(size=(n, 2)) + 1.0)


def analytic_kl(loc, scale):
    return float(np.sum(np.log(1.0 / scale) + (scale**2 + loc**2) / 2 - 0.5))


@pytest.fixture(scope="module")
def dropout_run():
    gan = FGAN("js", generator_optimizer=optax.adam(1e-2), critic_optimizer=optax.adam(1e-2))
    x = data()
    state = gan.init(jax.random.key(0), dropout_model, critic(), x)
    state, infos = jax.lax.scan(lambda s, k: jax.jit(gan.step)(k, s, x), state, jax.random.split(jax.random.key(1), 5))
    return gan, state, infos


def test_mc_dropout_draws_differ_for_a_fixed_z(dropout_run):
    gan, state, infos = dropout_run
    assert np.all(np.isfinite(np.asarray(infos.generator_loss)))
    z = jnp.full((3, 1), 0.7)
    fixed = handlers.condition(dropout_model, data={"z": z})
    draws = Predictive(fixed, params=gan.constrain(state.generator_params), num_samples=4)(jax.random.key(2), None, n=3)["x"]
    assert draws.shape == (4, 3, 2)
    assert not bool(jnp.allclose(draws[0], draws[1]))  # masks differ between draws
    assert not bool(jnp.allclose(draws[0, 0], draws[0, 1]))  # and between the rows of one draw


@pytest.fixture(scope="module")
def stochastic_run():
    """A guide over the last bias, KL / N in the generator's loss: the objective, its initial
    state and its jitted step (compiled once for the tests below)."""
    gan = FGAN("js", generator_optimizer=optax.adam(1e-2), critic_optimizer=optax.adam(1e-2), num_data=N_DATA)
    state = gan.init(jax.random.key(0), stochastic_model, critic(), data(), guide=bias_guide)
    return gan, state, jax.jit(gan.step)


def test_random_weights_kl_is_analytic_and_enters_the_generator_loss(stochastic_run):
    gan, state, step = stochastic_run
    x = data()
    assert {"bias_loc", "bias_scale", "generator$params"} <= set(state.generator_params)
    _, info = step(jax.random.key(1), state, x)
    want = analytic_kl(np.array([0.3, -0.2]), np.array([0.5, 0.2]))
    assert float(info.kl) == pytest.approx(want, rel=1e-12)
    # generator loss = the divergence proxy under the guide's draw + KL / N
    real, fake, kl = gan.sample(jax.random.split(jax.random.key(1))[0], state.generator_params, x)
    v = critic().apply({"params": state.critic_params}, fake)
    proxy = float(gan._generator_objective(None, v))
    assert float(info.generator_loss) == pytest.approx(proxy + want / N_DATA, rel=1e-12)


def test_guide_weights_train_and_predictive_samples(stochastic_run):
    gan, state, step = stochastic_run
    x = data()
    before = state.generator_params["bias_loc"]
    for k in range(3):
        state, _ = step(jax.random.key(10 + k), state, x)
    assert not bool(jnp.allclose(before, state.generator_params["bias_loc"]))
    params = gan.constrain(state.generator_params)
    samples = Predictive(stochastic_model, guide=bias_guide, params=params, num_samples=6,
                         return_sites=["x", SITE])(jax.random.key(2), None, n=4)
    assert samples["x"].shape == (6, 4, 2) and samples[SITE].shape == (6, 2)
    assert not bool(jnp.allclose(samples[SITE][0], samples[SITE][1]))


def test_num_data_is_required_with_a_guide():
    gan = FGAN("js", generator_optimizer=optax.sgd(0.1), critic_optimizer=optax.sgd(0.1))
    x = data()
    state = gan.init(jax.random.key(0), stochastic_model, critic(), x, guide=bias_guide)
    with pytest.raises(ValueError, match="Expected num_data"):
        gan.step(jax.random.key(1), state, x)


def test_to_inference_data_groups_and_shapes(stochastic_run):
    gan, state, step = stochastic_run
    x = data()
    state, history = jax.lax.scan(lambda s, k: step(k, s, x), state, jax.random.split(jax.random.key(1), 4))
    heldout = data(10)
    idata = to_inference_data(gan, state, heldout, jax.random.key(5), scale=0.5, num_draws=6, num_chains=2,
                              num_samples=50, history=history)
    assert idata.log_likelihood["x"].shape == (2, 6, 10)
    assert idata.posterior[SITE].shape == (2, 6, 2)
    assert idata.posterior["predictive_mean"].shape == (2, 6, 2)
    assert idata.posterior_predictive["x"].shape == (2, 6, 10, 2)
    assert idata.sample_stats["critic_loss"].shape == (4,)
    assert idata.log_likelihood.attrs["backend"] == "jax"
    assert np.all(np.isfinite(idata.log_likelihood["x"].values))
    # draws differ through the guide's weights
    assert not np.allclose(idata.log_likelihood["x"].values[0, 0], idata.log_likelihood["x"].values[0, 1])
    with pytest.raises(ValueError, match="num_chains to be an int >= 1"):
        to_inference_data(gan, state, heldout, jax.random.key(5), scale=0.5, num_chains=0)
    with pytest.raises(ValueError, match="scale > 0"):
        to_inference_data(gan, state, heldout, jax.random.key(5), scale=0.0)
    with pytest.raises(ValueError, match="finite held-out data"):
        to_inference_data(gan, state, heldout.at[0, 0].set(jnp.nan), jax.random.key(5), scale=0.5)


def test_to_inference_data_without_random_weights():
    """MC dropout only: each draw has fresh masks and latents; no posterior_predictive at 0."""
    gan = FGAN("js", generator_optimizer=optax.sgd(0.1), critic_optimizer=optax.sgd(0.1))
    x = data()
    state = gan.init(jax.random.key(0), dropout_model, critic(), x)
    idata = to_inference_data(gan, state, x[:5], jax.random.key(5), scale=0.7, num_draws=2, num_samples=30,
                              num_predictive=0)
    assert "posterior_predictive" not in idata.groups()
    ll = idata.log_likelihood["x"].values
    assert ll.shape == (1, 2, 5) and np.all(np.isfinite(ll))
    assert not np.allclose(ll[0, 0], ll[0, 1])  # fresh dropout masks and latents per draw
