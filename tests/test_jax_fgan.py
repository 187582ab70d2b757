"""The JAX f-GAN pair: one step equals the torch side's svi.step, the player schedule, compile
once, keys, the KL bound, the 1-D Gaussian fit of every divergence, and every ValueError."""

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
from numpyro import handlers  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402
from pyro.infer import SVI  # noqa: E402
from pyro.optim import SGD  # noqa: E402

from bayesgan.infer import FGANLoss  # noqa: E402
from bayesgan.jax import FGAN  # noqa: E402
from bayesgan.jax import divergences as jdiv  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")


def loc_model(x):
    loc = numpyro.param("loc", jnp.zeros(1))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", ndist.Delta(loc + z, event_dim=1), obs=x)


def scale_location_model(x):
    mu = numpyro.param("mu", jnp.zeros(1))
    s = numpyro.param("s", jnp.ones(1), constraint=constraints.positive)
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", ndist.Delta(mu + s * z, event_dim=1), obs=x)


def mlp(width=16, act=nn.tanh):
    return nn.Sequential([nn.Dense(width), act, nn.Dense(width), act, nn.Dense(1)])


def sgd(lr=0.1):
    return optax.sgd(lr)


# -- one step against the torch side -----------------------------------------------------------
@pytest.mark.parametrize("objective", ["nonsaturating", "saturating"])
@pytest.mark.parametrize("divergence", ["gan", "kl", "reverse_kl", "pearson", "neyman", "alpha"])
def test_one_step_equals_torch_svi_step(divergence, objective):
    """Same z (conditioned), same data, same critic weights, SGD: losses and both players'
    updated parameters agree with the torch side's svi.step."""
    z = np.array([[-1.0], [0.25], [0.5], [2.0]])
    xr = np.array([[1.5], [-0.5], [0.0], [3.0]])
    torch.manual_seed(0)
    tcritic = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    params = {f"layers_{i}": {"kernel": jnp.asarray(tcritic[i].weight.detach().numpy().T),
                              "bias": jnp.asarray(tcritic[i].bias.detach().numpy())} for i in (0, 2)}

    def tmodel(x):
        loc = pyro.param("loc", lambda: torch.full((1,), 0.3))
        with pyro.plate("data", x.shape[0]):
            zz = pyro.sample("z", pdist.Normal(0.0, 1.0).expand([1]).to_event(1), obs=torch.tensor(z))
            pyro.sample("x", pdist.Delta(loc + zz, event_dim=1), obs=x)

    tloss = FGANLoss(divergence, tcritic, generator_objective=objective)
    svi = SVI(tmodel, lambda x: None, SGD({"lr": 0.05}), tloss)
    c_loss, g_loss = svi.step(torch.tensor(xr))

    def jmodel(x):
        loc = numpyro.param("loc", jnp.full((1,), 0.3))
        with numpyro.plate("data", x.shape[0]):
            zz = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1), obs=jnp.asarray(z))
            numpyro.sample("x", ndist.Delta(loc + zz, event_dim=1), obs=x)

    critic = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(1)])
    gan = FGAN(divergence, generator_optimizer=sgd(0.05), critic_optimizer=sgd(0.05), generator_objective=objective)
    state = gan.init(jax.random.key(0), jmodel, critic, jnp.asarray(xr))
    state = state._replace(critic_params=params, critic_opt_state=gan.critic_optimizer.init(params))
    state, info = gan.step(jax.random.key(1), state, jnp.asarray(xr))
    assert float(info.critic_loss) == pytest.approx(c_loss, rel=1e-12)
    assert float(info.generator_loss) == pytest.approx(g_loss, rel=1e-12)
    assert float(info.divergence) == pytest.approx(tloss.last["divergence"], rel=1e-12)
    assert float(state.generator_params["loc"][0]) == pytest.approx(pyro.param("loc").item(), rel=1e-12)
    np.testing.assert_allclose(state.critic_params["layers_0"]["kernel"], tcritic[0].weight.detach().numpy().T, rtol=1e-12)
    np.testing.assert_allclose(state.critic_params["layers_2"]["bias"], tcritic[2].bias.detach().numpy(), rtol=1e-12)


# -- the schedule, compile once, keys ------------------------------------------------------
@pytest.fixture(scope="module")
def three_steps():
    """An FGAN with critic_steps=3 and Adam, its jitted step (counting its traces) and a state."""
    gan = FGAN("js", generator_optimizer=optax.adam(1e-2), critic_optimizer=optax.adam(1e-2), critic_steps=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 1)) + 0.5)
    state = gan.init(jax.random.key(0), loc_model, mlp(), x)
    traces = []

    def counted(key, state, x):
        traces.append(1)  # runs only while JAX traces the function
        return gan.step(key, state, x)

    step = jax.jit(counted)
    step.traces = traces
    return gan, step, state, x


def test_critic_steps_leave_the_generator_untouched(three_steps):
    gan, step, state, x = three_steps
    for k in range(6):
        new, info = step(jax.random.key(100 + k), state, x)
        generator_step = k % 3 == 2
        assert bool(info.generator_updated) is generator_step
        assert int(info.step) == k and int(new.step) == k + 1
        same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), (new.generator_params, new.generator_opt_state),
                            (state.generator_params, state.generator_opt_state))
        assert all(jax.tree.leaves(same)) is not generator_step, k
        moved = jax.tree.map(lambda a, b: not bool(jnp.array_equal(a, b)), new.critic_params, state.critic_params)
        assert all(jax.tree.leaves(moved)), k
        assert np.isfinite(float(info.critic_loss)) and np.isfinite(float(info.generator_loss))
        state = new


def test_compiles_once_and_keys(three_steps):
    gan, step, state, x = three_steps
    a = step(jax.random.key(7), state, x)
    b = step(jax.random.key(7), state, x)
    c = step(jax.random.key(8), state, x)
    assert all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b)))  # same key, same result
    assert len(step.traces) == 1  # compiled once for every call, in this test and the one above
    assert float(a[1].critic_loss) != float(c[1].critic_loss)
    _, fake7, _ = gan.sample(jax.random.key(7), state.generator_params, x)
    _, fake8, _ = gan.sample(jax.random.key(8), state.generator_params, x)
    assert not bool(jnp.allclose(fake7, fake8))
    # the same step under lax.scan: a whole run is one compiled call
    keys = jax.random.split(jax.random.key(3), 4)
    final, infos = jax.lax.scan(lambda s, k: gan.step(k, s, x), state, keys)
    assert infos.critic_loss.shape == (4,) and int(final.step) == int(state.step) + 4
    assert infos.generator_updated.tolist() == [(int(state.step) + i + 1) % 3 == 0 for i in range(4)]


def test_gan_constant_critic_at_equal_distributions_gives_log_four():
    class Zero(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1, kernel_init=nn.initializers.zeros)(x)

    gan = FGAN("gan", generator_optimizer=sgd(0.0), critic_optimizer=sgd(0.0))
    x = jnp.zeros((8, 1))
    state = gan.init(jax.random.key(0), loc_model, Zero(), x)
    _, info = gan.step(jax.random.key(1), state, x)
    assert float(info.critic_loss) == pytest.approx(np.log(4.0), rel=1e-15)
    assert float(info.critic_real) == pytest.approx(-np.log(2.0), rel=1e-15)


def test_trained_critic_estimates_kl():
    """KL(N(0,1) || N(1,1)) = 0.5, as on the torch side (300 Adam steps, batch 1024)."""

    def shifted(x):
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
            numpyro.sample("x", ndist.Delta(1.0 + z, event_dim=1), obs=x)

    critic = mlp()
    gan = FGAN("kl", generator_optimizer=optax.adam(3e-3), critic_optimizer=optax.adam(3e-3))
    state = gan.init(jax.random.key(0), shifted, critic, jnp.zeros((1024, 1)))

    def body(state, key):
        k1, k2 = jax.random.split(key)
        return gan.step(k2, state, jax.random.normal(k1, (1024, 1)))

    state, infos = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(state, jax.random.split(jax.random.key(1), 300))
    assert float(infos.divergence[-100:].mean()) == pytest.approx(0.5, rel=0.05)
    k1, k2 = jax.random.split(jax.random.key(2))
    real, fake = jax.random.normal(k1, (100_000, 1)), 1.0 + jax.random.normal(k2, (100_000, 1))
    apply = lambda x: critic.apply({"params": state.critic_params}, x)  # noqa: E731
    bound = apply(real).mean() - jnp.exp(apply(fake) - 1).mean()
    assert float(bound) == pytest.approx(0.5, rel=0.05)


# -- every ValueError --------------------------------------------------------------------------
def make(**kwargs):
    return FGAN("js", generator_optimizer=sgd(), critic_optimizer=sgd(), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"critic_steps": 0}, "critic_steps to be an int >= 1"),
    ({"critic_steps": 1.5}, "critic_steps to be an int >= 1"),
    ({"generator_objective": "minimax"}, "generator_objective in"),
    ({"penalty": 3.0}, "penalty to be callable"),
    ({"num_data": 0}, "num_data to be an int >= 1"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_optimizer_and_divergence_errors():
    with pytest.raises(ValueError, match="optax GradientTransformation"):
        FGAN("js", generator_optimizer=0.1, critic_optimizer=sgd())
    with pytest.raises(ValueError, match="Unknown divergence"):
        FGAN("nope", generator_optimizer=sgd(), critic_optimizer=sgd())
    with pytest.raises(ValueError, match="no keyword arguments"):
        jdiv.get(jdiv.get("kl"), alpha=2.0)
    with pytest.raises(ValueError, match="0 < pi < 1"):
        jdiv.get("weighted_js", pi=1.0)
    with pytest.raises(ValueError, match="alpha not in"):
        jdiv.get("alpha", alpha=1.0)
    with pytest.raises(ValueError, match="a critic_optimizer"):
        FGAN("js", generator_optimizer=sgd(), critic_optimizer=None).init(jax.random.key(0), loc_model, mlp(), jnp.zeros((4, 1)))


def test_model_errors():
    x = jnp.zeros((4, 1))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="a critic"):
        make().init(key, loc_model, None, x)
    with pytest.raises(ValueError, match="Flax module"):
        make().init(key, loc_model, lambda x: x, x)
    with pytest.raises(ValueError, match="observation site 'y'"):
        make(obs_site="y").init(key, loc_model, mlp(), x)

    def unobserved(x):
        numpyro.sample("x", ndist.Normal(jnp.zeros((4, 1)), 1.0).to_event(2))

    with pytest.raises(ValueError, match="to be observed"):
        make().init(key, unobserved, mlp(), x)

    def bernoulli(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", ndist.Bernoulli(0.5 * jnp.ones(1)).to_event(1), obs=x)

    with pytest.raises(ValueError, match="reparameterized observation .* actual Bernoulli"):
        make().init(key, bernoulli, mlp(), x)

    def wrong_shape(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", ndist.Delta(jnp.zeros((x.shape[0], 2)), event_dim=1), obs=x)

    with pytest.raises(ValueError, match="generator's output shape"):
        make().init(key, wrong_shape, mlp(), x)
    with pytest.raises(ValueError, match="before step"):
        make().sample(key, {}, x)


def test_seeded_model_runs_through_numpyro_handlers():
    gan = make()
    x = jnp.zeros((4, 1))
    state = gan.init(jax.random.key(0), loc_model, mlp(), x)
    tr = handlers.trace(handlers.seed(loc_model, 0)).get_trace(x)
    assert set(state.generator_params) == {n for n, s in tr.items() if s["type"] == "param"} == {"loc"}
    real, fake, kl = gan.sample(jax.random.key(1), state.generator_params, x)
    assert real.shape == fake.shape == (4, 1) and bool(jnp.all(real == x)) and float(kl) == 0.0


def test_constrained_parameters_are_optimized_unconstrained():
    gan = make()
    state = gan.init(jax.random.key(0), scale_location_model, mlp(), jnp.zeros((4, 1)))
    assert float(state.generator_params["s"][0]) == 0.0  # log 1
    assert float(gan.constrain(state.generator_params)["s"][0]) == 1.0
