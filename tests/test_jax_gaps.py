"""The JAX side's former gaps: ``num_masks`` (both losses averaged over the passes under the keys
``jax.random.split(model_key, M)``, the critic's penalty once on the first pass's batch) and the
``Lazy`` penalty (the torch side's ``Lazy`` as a function of the step counter), with every
ValueError."""

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
import torch  # noqa: E402

from bayesgan import penalties as tpen  # noqa: E402
from bayesgan.jax import FGAN, MMD, Wasserstein  # noqa: E402
from bayesgan.jax import penalties as jpen  # noqa: E402
from bayesgan.jax.mmd import mmd2  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")

X = np.array([[1.5, 0.2], [-0.5, 0.9], [0.0, -0.3], [3.0, 1.0], [0.7, -1.4]])
LR = 0.05


def model(x):
    loc = numpyro.param("loc", jnp.array([0.3, -0.2]))
    scale = numpyro.param("scale", jnp.array([1.2, 0.8]))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("x", ndist.Delta(loc + scale * jnp.tanh(z), event_dim=1), obs=x)


def dropout_model(x):
    net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dropout(0.5, deterministic=False), nn.Dense(2)])
    from numpyro.contrib.module import flax_module

    module = flax_module("generator", net, input_shape=(1, 2), apply_rng=["dropout"])
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("x", ndist.Delta(module(z, rngs={"dropout": numpyro.prng_key()}), event_dim=1), obs=x)


def critic():
    return nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(1)])


class Recording(jpen.Penalty):
    """A penalty that records its calls' batches."""

    def __init__(self, penalty):
        self.penalty, self.calls = penalty, []

    def __call__(self, rng_key, critic_fn, real, fake):
        self.calls.append((real, fake))
        return self.penalty(rng_key, critic_fn, real, fake)


def sgd():
    return optax.sgd(LR)


def tree_close(a, b, rel=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rel, atol=1e-14)


# -- num_masks --------------------------------------------------------------------------------
@pytest.mark.parametrize("num_masks", [3])
def test_num_masks_averages_the_passes_and_penalizes_once(num_masks):
    inner = jpen.R2(1.0) + jpen.OutputPenalty(0.1)
    penalty = Recording(inner)
    gan = FGAN("js", generator_optimizer=sgd(), critic_optimizer=sgd(), penalty=penalty, num_masks=num_masks)
    x = jnp.asarray(X)
    state = gan.init(jax.random.key(0), model, critic(), x)
    rng = jax.random.key(1)
    new, info = gan.step(rng, state, x)

    model_key, penalty_key = jax.random.split(rng)
    keys = jax.random.split(model_key, num_masks)
    gp, cp = state.generator_params, state.critic_params
    apply = gan._critic_apply
    batches = [gan.sample(k, gp, x)[:2] for k in keys]
    assert not np.allclose(batches[0][1], batches[1][1])  # fresh latents each pass
    real0, fake0 = batches[0]

    def generator_loss(gp):
        losses = []
        for k in keys:
            real, fake, _ = gan.sample(k, gp, x)
            losses.append(gan._generator_loss(apply(cp, real), apply(cp, fake)))
        return sum(losses) / num_masks

    def critic_loss(cp):
        losses = [gan._critic_objective(apply(cp, r), apply(cp, f))[0] for r, f in batches]
        return sum(losses) / num_masks, inner(penalty_key, lambda v: apply(cp, v), real0, fake0)

    def total_critic(cp):
        loss, pen = critic_loss(cp)
        return loss + pen

    records = [gan._critic_objective(apply(cp, r), apply(cp, f))[1] for r, f in batches]
    loss, pen = critic_loss(cp)
    assert float(info.generator_loss) == pytest.approx(float(generator_loss(gp)), rel=1e-12)
    assert float(info.critic_loss) == pytest.approx(float(loss + pen), rel=1e-12)
    assert float(info.penalty) == pytest.approx(float(pen), rel=1e-12)
    for name in ("divergence", "critic_real", "critic_fake"):
        expected = sum(float(r[name]) for r in records) / num_masks
        assert float(getattr(info, name)) == pytest.approx(expected, rel=1e-12)
    # the penalty ran once, on the first pass's batch
    assert len(penalty.calls) == 1
    np.testing.assert_array_equal(np.asarray(penalty.calls[0][0]), np.asarray(real0))
    np.testing.assert_array_equal(np.asarray(penalty.calls[0][1]), np.asarray(fake0))
    # both players step along the averaged gradients
    tree_close(new.generator_params, jax.tree.map(lambda p, g: p - LR * g, gp, jax.grad(generator_loss)(gp)))
    tree_close(new.critic_params, jax.tree.map(lambda p, g: p - LR * g, cp, jax.grad(total_critic)(cp)))


def test_num_masks_one_is_the_default():
    x = jnp.asarray(X)
    runs = []
    for kwargs in ({}, {"num_masks": 1}):
        gan = FGAN("gan", generator_optimizer=sgd(), critic_optimizer=sgd(), penalty=jpen.R1(1.0), **kwargs)
        state = gan.init(jax.random.key(0), model, critic(), x)
        runs.append(jax.jit(gan.step)(jax.random.key(1), state, x))
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_num_masks_mc_dropout_under_jit_with_critic_steps():
    gan = Wasserstein(generator_optimizer=optax.adam(1e-3), critic_optimizer=optax.adam(1e-3),
                      penalty=jpen.R1(1.0), critic_steps=2, num_masks=3)
    x = jnp.asarray(X)
    state = gan.init(jax.random.key(0), dropout_model, critic(), x)
    step = jax.jit(gan.step)
    generator_params = state.generator_params
    updated = []
    for i in range(4):
        state, info = step(jax.random.key(10 + i), state, x)
        assert np.isfinite(float(info.critic_loss)) and np.isfinite(float(info.generator_loss))
        updated.append(bool(info.generator_updated))
    assert updated == [False, True, False, True]
    assert int(state.step) == 4
    assert not np.allclose(jax.tree.leaves(generator_params)[0], jax.tree.leaves(state.generator_params)[0])


def test_num_masks_mmd_without_critic():
    gan = MMD(generator_optimizer=sgd(), num_masks=2)
    x = jnp.asarray(X)
    state = gan.init(jax.random.key(0), model, None, x)
    rng = jax.random.key(3)
    _, info = jax.jit(gan.step)(rng, state, x)
    keys = jax.random.split(jax.random.split(rng)[0], 2)
    estimates = [mmd2(*gan.sample(k, state.generator_params, x)[:2], gan.kernel, estimator="biased") for k in keys]
    expected = (float(estimates[0]) + float(estimates[1])) / 2
    assert float(info.divergence) == pytest.approx(expected, rel=1e-12)
    assert float(info.generator_loss) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("num_masks", [0, 1.5, True, None])
def test_num_masks_errors(num_masks):
    with pytest.raises(ValueError, match="Expected num_masks to be an int >= 1"):
        FGAN("gan", generator_optimizer=sgd(), critic_optimizer=sgd(), num_masks=num_masks)


# -- Lazy -------------------------------------------------------------------------------------
def test_lazy_equals_the_torch_lazy_over_steps():
    torch.manual_seed(0)
    tcritic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    params = {f"layers_{i}": {"kernel": jnp.asarray(tcritic[i].weight.detach().numpy().T),
                              "bias": jnp.asarray(tcritic[i].bias.detach().numpy())} for i in (0, 2)}
    jcritic = critic()
    real, fake = np.asarray(X), np.asarray(X[::-1] * 0.5)
    tlazy = tpen.Lazy(tpen.R1(2.0), every=3)
    jlazy = jpen.Lazy(jpen.R1(2.0), every=3)
    value = jax.jit(lambda step: jlazy(None, lambda v: jcritic.apply({"params": params}, v),
                                       jnp.asarray(real), jnp.asarray(fake), step=step))
    for step in range(7):
        expected = float(tlazy(tcritic, torch.tensor(real), torch.tensor(fake)).detach())
        assert float(value(jnp.asarray(step))) == pytest.approx(expected, rel=1e-12, abs=0.0)
        assert (expected == 0.0) == (step % 3 != 0)


def test_lazy_closed_form_and_gradient():
    w = jnp.array([3.0, 4.0])
    x = jnp.ones((4, 2))
    lazy = jpen.Lazy(jpen.R1(1.0), every=4)

    def value(w, step):
        return lazy(None, lambda v: v @ w, x, x, step=step)

    for step in range(9):
        active = step % 4 == 0
        assert float(value(w, step)) == (4 * 0.5 * 25.0 if active else 0.0)
        np.testing.assert_allclose(np.asarray(jax.grad(value)(w, step)), 4 * np.asarray(w) if active else 0.0)


def test_lazy_in_an_objective_steps_as_the_scaled_penalty_or_none():
    x = jnp.asarray(X)
    every = 2

    def make(penalty):
        return Wasserstein(generator_optimizer=sgd(), critic_optimizer=sgd(), penalty=penalty, critic_steps=1)

    lazy, full, free = make(jpen.Lazy(jpen.R1(1.0), every=every)), make(jpen.R1(2.0)), make(None)
    state = lazy.init(jax.random.key(0), model, critic(), x)
    for other in (full, free):
        other.init(jax.random.key(0), model, critic(), x)
    steps = {name: jax.jit(obj.step) for name, obj in (("lazy", lazy), ("full", full), ("free", free))}
    for i in range(4):
        key = jax.random.key(20 + i)
        new, info = steps["lazy"](key, state, x)
        ref, ref_info = steps["full" if i % every == 0 else "free"](key, state, x)
        tree_close(new, ref)
        assert float(info.penalty) == pytest.approx(float(ref_info.penalty), rel=1e-12, abs=0.0)
        assert (float(info.penalty) > 0) == (i % every == 0)
        state = new


def test_lazy_in_a_sum():
    w = jnp.array([3.0, 4.0])
    x = jnp.ones((4, 2))
    total = jpen.R2(1.0) + jpen.Lazy(jpen.R1(1.0), every=2)
    assert total.uses_step
    values = [float(total(jax.random.key(0), lambda v: v @ w, x, x, step=s)) for s in range(3)]
    assert values == [12.5 + 25.0, 12.5, 12.5 + 25.0]
    assert repr(total) == "R2(1.0) + Lazy(R1(1.0), every=2)"


@pytest.mark.parametrize("every", [0, 1.5, True])
def test_lazy_every_errors(every):
    with pytest.raises(ValueError, match="Expected every to be an int >= 1"):
        jpen.Lazy(jpen.R1(1.0), every=every)


def test_lazy_errors():
    with pytest.raises(ValueError, match="Expected penalty to be callable"):
        jpen.Lazy(3.0)
    x = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="Expected the step counter"):
        jpen.Lazy(jpen.R1(1.0))(None, lambda v: v.sum(1), x, x)


# -- BatchNorm in the generator ---------------------------------------------------------------
Z = np.array([[-1.0, 0.3], [0.25, -0.7], [0.5, 1.1], [2.0, 0.0], [-0.4, -1.2]])


class BatchNormGenerator(nn.Module):
    @nn.compact
    def __call__(self, z, train=True):
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(4)(z))
        return nn.Dense(2)(nn.relu(h))


def batchnorm_model(x, train=True, fixed=True):
    from numpyro.contrib.module import flax_module

    net = flax_module("generator", BatchNormGenerator(), input_shape=(1, 2), mutable=["batch_stats"])
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=jnp.asarray(Z) if fixed else None)
        out = numpyro.deterministic("out", net(z, train))
        numpyro.sample("x", ndist.Delta(out, event_dim=1), obs=x)


def stats(state):
    return state.generator_state["generator$state"]["batch_stats"]["BatchNorm_0"]


@pytest.mark.parametrize("num_masks", [1, 2])
def test_batchnorm_running_statistics_follow_the_passes(num_masks):
    gan = FGAN("js", generator_optimizer=sgd(), critic_optimizer=sgd(), num_masks=num_masks)
    x = jnp.asarray(X)
    state = gan.init(jax.random.key(0), batchnorm_model, critic(), x)
    new, info = jax.jit(gan.step)(jax.random.key(1), state, x)
    kernel = state.generator_params["generator$params"]["Dense_0"]
    h = Z @ np.asarray(kernel["kernel"]) + np.asarray(kernel["bias"])
    # the same z in every pass: M updates with momentum 0.9 of the batch's (biased) moments
    keep = 0.9**num_masks
    old = stats(state)
    np.testing.assert_allclose(stats(new)["mean"], keep * old["mean"] + (1 - keep) * h.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats(new)["var"], keep * old["var"] + (1 - keep) * h.var(0), rtol=1e-12)
    assert np.isfinite(float(info.generator_loss))


def test_batchnorm_generator_trains_jitted_and_samples_with_running_statistics():
    from functools import partial

    from numpyro.infer import Predictive

    gan = FGAN("js", generator_optimizer=optax.adam(1e-2), critic_optimizer=optax.adam(1e-2), critic_steps=2)
    x = jnp.asarray(X)
    model = partial(batchnorm_model, fixed=False)
    state = gan.init(jax.random.key(0), model, critic(), x)
    first = state

    def body(state, key):
        return gan.step(key, state, x)

    state, infos = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(1), 4)))(state)
    assert np.all(np.isfinite(np.asarray(infos.critic_loss)))
    assert int(state.step) == 4
    for name in ("mean", "var"):
        assert not np.allclose(stats(state)[name], stats(first)[name])
    assert not np.allclose(state.generator_params["generator$params"]["Dense_1"]["kernel"],
                           first.generator_params["generator$params"]["Dense_1"]["kernel"])
    # sampling in eval mode uses the running statistics carried in the state
    params = {**gan.constrain(state.generator_params), **state.generator_state}
    eval_model = partial(batchnorm_model, train=False)
    out = Predictive(eval_model, params=params, num_samples=1, return_sites=["out"])(jax.random.key(2), x)["out"][0]
    variables = {"params": params["generator$params"], **state.generator_state["generator$state"]}
    np.testing.assert_allclose(out, BatchNormGenerator().apply(variables, jnp.asarray(Z), train=False), rtol=1e-12)
    train_out, _ = BatchNormGenerator().apply(variables, jnp.asarray(Z), train=True, mutable=["batch_stats"])
    assert not np.allclose(out, train_out)
    # sample() takes the state too; in training mode the output uses the batch's statistics
    _, fake, _ = gan.sample(jax.random.key(3), state.generator_params, x, state.generator_state)
    assert fake.shape == x.shape


def test_models_without_mutable_sites_carry_an_empty_state():
    gan = FGAN("gan", generator_optimizer=sgd(), critic_optimizer=sgd())
    x = jnp.asarray(X)
    state = gan.init(jax.random.key(0), model, critic(), x)
    assert state.generator_state == {}
    new, _ = jax.jit(gan.step)(jax.random.key(1), state, x)
    assert new.generator_state == {}
    legacy = state._replace(generator_state=None)  # a GANState built positionally, without it
    assert jax.jit(gan.step)(jax.random.key(1), legacy, x)[0].generator_state is None
