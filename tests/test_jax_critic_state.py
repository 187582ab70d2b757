"""The critic's mutable collections (BatchNorm's running statistics) in ``GANState.critic_state``:
updated by the critic's own term, on the real batch then on the fakes (the torch side's
train-mode BatchNorm), the generator's term and the penalties on the batch's statistics without
updating them, and the running statistics used by ``critic_apply`` outside training."""

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

from bayesgan.jax import FGAN, MMD, Wasserstein  # noqa: E402
from bayesgan.jax import penalties as jpen  # noqa: E402
from bayesgan.jax.diagnostics import generator_sharpness  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")

X = np.array([[1.5, 0.2], [-0.5, 0.9], [0.0, -0.3], [3.0, 1.0], [0.7, -1.4]])
LR = 0.05
MOMENTUM = 0.9


def model(x):
    loc = numpyro.param("loc", jnp.array([0.3, -0.2]))
    scale = numpyro.param("scale", jnp.array([1.2, 0.8]))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("x", ndist.Delta(loc + scale * jnp.tanh(z), event_dim=1), obs=x)


class BatchNormCritic(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        dense = nn.Dense(4, param_dtype=jnp.float64)
        h = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, param_dtype=jnp.float64)(dense(x))
        return nn.Dense(1, param_dtype=jnp.float64)(nn.tanh(h))


def plain_critic():
    return nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(1)])


def objectives():
    return {
        "fgan": lambda **kw: FGAN("gan", generator_optimizer=optax.sgd(LR), critic_optimizer=optax.sgd(LR), **kw),
        "wgan-gp": lambda **kw: Wasserstein(
            generator_optimizer=optax.sgd(LR), critic_optimizer=optax.sgd(LR), penalty=jpen.GradientPenalty(10.0), **kw
        ),
    }


def stats(state):
    return state.critic_state["batch_stats"]["BatchNorm_0"]


def batch_apply(cp, state, x):
    """The critic in training mode (the batch's statistics), the running ones left as they are."""
    return BatchNormCritic().apply({"params": cp, **state}, x, mutable=["batch_stats"])[0]


def hidden(cp, x):
    return x @ cp["Dense_0"]["kernel"] + cp["Dense_0"]["bias"]


def running(mean, var, h):
    """Flax BatchNorm's update of the running statistics (the biased batch variance), kept in
    their dtypes (float32: Flax initializes them so)."""
    new_mean = MOMENTUM * np.float64(mean) + (1 - MOMENTUM) * np.asarray(h).mean(0)
    new_var = MOMENTUM * np.float64(var) + (1 - MOMENTUM) * np.asarray(h).var(0)
    return new_mean.astype(mean.dtype), new_var.astype(var.dtype)


@pytest.mark.parametrize("name", ["fgan", "wgan-gp"])
def test_first_step_closed_form(name):
    x = jnp.asarray(X)
    gan = objectives()[name](critic_steps=1)  # both players step
    state = gan.init(jax.random.key(0), model, BatchNormCritic(), x)
    assert set(state.critic_state) == {"batch_stats"}
    np.testing.assert_array_equal(stats(state)["mean"], np.zeros(4))
    np.testing.assert_array_equal(stats(state)["var"], np.ones(4))
    assert stats(state)["var"].dtype == jnp.float32  # Flax's; kept through the steps
    rng = jax.random.key(1)
    new, info = jax.jit(gan.step)(rng, state, x)

    model_key, penalty_key = jax.random.split(rng)
    gp, cp, cs = state.generator_params, state.critic_params, state.critic_state
    real, fake, _ = gan.sample(model_key, gp, x)
    # the running statistics: the real forward, then the fake one (momentum), nothing else
    mean, var = running(stats(state)["mean"], stats(state)["var"], hidden(cp, real))
    mean, var = running(mean, var, hidden(cp, fake))
    np.testing.assert_allclose(stats(new)["mean"], mean, rtol=1e-6, atol=0)  # float32: an ulp or so
    np.testing.assert_allclose(stats(new)["var"], var, rtol=1e-6, atol=0)  # float32: an ulp or so

    # the critic's loss and step: batch statistics in the objective and the penalty
    def critic_loss(p):
        loss, _ = gan._critic_objective(batch_apply(p, cs, real), batch_apply(p, cs, fake))
        if gan.penalty is not None:
            loss = loss + gan.penalty(penalty_key, lambda v: batch_apply(p, cs, v), real, fake)
        return loss

    np.testing.assert_allclose(info.critic_loss, critic_loss(cp), rtol=1e-12)
    expected = jax.tree.map(lambda p, g: p - LR * g, cp, jax.grad(critic_loss)(cp))
    for a, b in zip(jax.tree.leaves(new.critic_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)

    # the generator's term: the frozen critic on the batch's statistics, with the incoming state
    def generator_loss(g):
        r, f, _ = gan.sample(model_key, g, x)
        return gan._generator_loss(batch_apply(cp, cs, r), batch_apply(cp, cs, f))

    assert bool(info.generator_updated)
    np.testing.assert_allclose(info.generator_loss, generator_loss(gp), rtol=1e-12)
    expected = jax.tree.map(lambda p, g: p - LR * g, gp, jax.grad(generator_loss)(gp))
    for a, b in zip(jax.tree.leaves(new.generator_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_num_masks_updates_pass_by_pass():
    x = jnp.asarray(X)
    gan = objectives()["fgan"](num_masks=2)
    state = gan.init(jax.random.key(0), model, BatchNormCritic(), x)
    rng = jax.random.key(4)
    new, _ = jax.jit(gan.step)(rng, state, x)
    model_key, _ = jax.random.split(rng)
    mean, var = stats(state)["mean"], stats(state)["var"]
    for key in jax.random.split(model_key, 2):  # real 1, fake 1, real 2, fake 2
        real, fake, _ = gan.sample(key, state.generator_params, x)
        mean, var = running(mean, var, hidden(state.critic_params, real))
        mean, var = running(mean, var, hidden(state.critic_params, fake))
    np.testing.assert_allclose(stats(new)["mean"], mean, rtol=1e-6, atol=0)  # float32: an ulp or so
    np.testing.assert_allclose(stats(new)["var"], var, rtol=1e-6, atol=0)  # float32: an ulp or so


@pytest.mark.parametrize("name", ["fgan", "wgan-gp"])
def test_trains_jitted_and_evaluates_with_running_statistics(name):
    x = jnp.asarray(X)
    gan = objectives()[name]()
    state = gan.init(jax.random.key(0), model, BatchNormCritic(), x)
    step = jax.jit(gan.step)
    previous = stats(state)
    for i in range(4):
        state, info = step(jax.random.key(10 + i), state, x)
        assert np.isfinite(info.critic_loss) and np.isfinite(info.generator_loss)
        assert not np.allclose(stats(state)["mean"], previous["mean"])
        assert not np.allclose(stats(state)["var"], previous["var"])
        previous = stats(state)
    assert stats(state)["var"].dtype == jnp.float32
    # a stable carry: the steps run under lax.scan
    scanned, infos = jax.lax.scan(lambda s, k: step(k, s, x), state, jax.random.split(jax.random.key(5), 2))
    assert np.isfinite(infos.critic_loss).all() and int(scanned.step) == 6
    assert int(state.step) == 4
    # outside training: the running statistics, nothing mutable
    out = gan.critic_apply(state, x, train=False)
    variables = {"params": state.critic_params, **state.critic_state}
    np.testing.assert_array_equal(out, BatchNormCritic().apply(variables, x, train=False))
    assert not np.allclose(out, batch_apply(state.critic_params, state.critic_state, x))
    # the diagnostics hold the critic fixed, in training mode, its state unchanged
    (top,) = generator_sharpness(gan, state, x, jax.random.key(2), num_iterations=4)
    assert np.isfinite(top)


def test_mmd_with_a_batchnorm_critic():
    x = jnp.asarray(X)
    gan = MMD(generator_optimizer=optax.sgd(LR), critic_optimizer=optax.sgd(LR))
    state = gan.init(jax.random.key(0), model, BatchNormCritic(), x)
    rng = jax.random.key(1)
    new, info = jax.jit(gan.step)(rng, state, x)
    real, fake, _ = gan.sample(jax.random.split(rng)[0], state.generator_params, x)
    mean, var = running(stats(state)["mean"], stats(state)["var"], hidden(state.critic_params, real))
    mean, var = running(mean, var, hidden(state.critic_params, fake))
    np.testing.assert_allclose(stats(new)["mean"], mean, rtol=1e-6, atol=0)  # float32: an ulp or so
    assert np.isfinite(info.divergence)


def test_stateless_critics_carry_empty_or_none():
    x = jnp.asarray(X)
    gan = objectives()["wgan-gp"]()
    state = gan.init(jax.random.key(0), model, plain_critic(), x)
    assert state.critic_state == {}
    step = jax.jit(gan.step)
    new, info = step(jax.random.key(1), state, x)
    assert new.critic_state == {}
    legacy = GANStateWithout(state)
    old, old_info = step(jax.random.key(1), legacy, x)
    assert old.critic_state is None
    for a, b in zip(jax.tree.leaves((new[:6], info)), jax.tree.leaves((old[:6], old_info))):
        np.testing.assert_array_equal(a, b)  # bit-identical
    np.testing.assert_array_equal(gan.critic_apply(state, x), plain_critic().apply({"params": state.critic_params}, x))
    # a critic-free MMD carries {} and has no critic to apply
    mmd = MMD(generator_optimizer=optax.sgd(LR))
    mmd_state = mmd.init(jax.random.key(0), model, None, x)
    assert mmd_state.critic_state == {}
    assert jax.jit(mmd.step)(jax.random.key(1), mmd_state, x)[0].critic_state == {}
    with pytest.raises(ValueError, match="Expected a bound critic"):
        mmd.critic_apply(mmd_state, x)


def GANStateWithout(state):
    """A GANState built positionally, without the critic's state (its default, None)."""
    from bayesgan.jax import GANState

    return GANState(*state[:6])
