"""Every f-divergence fits x = mu + s z to N(3, 0.5^2) through the JAX pair: the setup and
tolerances of tests/test_fgan_fit.py (mu within 0.05, s within 10%, the final values; batch 256,
a LeakyReLU critic 1-64-64-1, ClippedAdam's element-wise clip and betas (0.5, 0.999), 1000 steps,
the output penalty and lr 5e-3 for total variation, the output penalty for Neyman), run as one
jit-compiled lax.scan per divergence in float64. Seed 0 (keys 0 and 10_000)."""

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("numpyro")
pytest.importorskip("optax")
pytest.importorskip("flax")

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import optax  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402

from bayesgan.jax import FGAN  # noqa: E402
from bayesgan.jax import divergences as jdiv  # noqa: E402
from bayesgan.jax.penalties import OutputPenalty  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("jax_x64")]


def scale_location_model(x):
    mu = numpyro.param("mu", jnp.zeros(1))
    s = numpyro.param("s", jnp.ones(1), constraint=constraints.positive)
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", ndist.Delta(mu + s * z, event_dim=1), obs=x)


def mlp(width, act):
    return nn.Sequential([nn.Dense(width), act, nn.Dense(width), act, nn.Dense(1)])


LOC, SCALE, BATCH, WIDTH = 3.0, 0.5, 256, 64
SETTINGS = {
    "total_variation": ("total_variation", {}, {"lr": 5e-3, "penalty": OutputPenalty(0.1)}),
    "kl": ("kl", {}, {}),
    "reverse_kl": ("reverse_kl", {}, {}),
    "pearson": ("pearson", {}, {}),
    "neyman": ("neyman", {}, {"penalty": OutputPenalty(0.1)}),
    "squared_hellinger": ("squared_hellinger", {}, {}),
    "js": ("js", {}, {}),
    "gan": ("gan", {}, {}),
    "weighted_js": ("weighted_js", {"pi": 0.5}, {}),
    "alpha_0.5": ("alpha", {"alpha": 0.5}, {}),
    "alpha_2": ("alpha", {"alpha": 2.0}, {}),
}


def clipped_adam(lr):
    """pyro.optim.ClippedAdam: element-wise clip to 10, then Adam with betas (0.5, 0.999)."""
    return optax.chain(optax.clip(10.0), optax.adam(lr, b1=0.5, b2=0.999))


def fit(divergence, *, steps=1000, lr=1e-2, penalty=None, seed=0):
    leaky = lambda x: nn.leaky_relu(x, 0.2)  # noqa: E731
    gan = FGAN(divergence, generator_optimizer=clipped_adam(lr), critic_optimizer=clipped_adam(lr), penalty=penalty)
    state = gan.init(jax.random.key(seed), scale_location_model, mlp(WIDTH, leaky), jnp.zeros((BATCH, 1)))

    def body(state, key):
        k1, k2 = jax.random.split(key)
        return gan.step(k2, state, LOC + SCALE * jax.random.normal(k1, (BATCH, 1)))

    keys = jax.random.split(jax.random.key(10_000 + seed), steps)
    state, _ = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(state, keys)
    params = gan.constrain(state.generator_params)
    return float(params["mu"][0]), float(params["s"][0])


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_fits_gaussian(case):
    name, kwargs, overrides = SETTINGS[case]
    mu, s = fit(jdiv.get(name, **kwargs), **overrides)
    assert abs(mu - LOC) < 0.05, (case, mu, s)
    assert abs(s - SCALE) / SCALE < 0.10, (case, mu, s)


def test_settings_cover_every_divergence():
    assert {name for name, _, _ in SETTINGS.values()} == {jdiv.get(n).name for n in jdiv.names()}


