"""Regularizers on the JAX side: the relax handler, SAM (rho 0 is the base optimizer, the
quadratic closed form, one GAN step equal to the torch side's SAM), EMA, sharpness by
Hessian-vector products, and every ValueError."""

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
from pyro.infer import SVI  # noqa: E402
from pyro.optim import SGD  # noqa: E402

from bayesgan.infer import SAM, FGANLoss  # noqa: E402
from bayesgan.jax import EMA, FGAN, relax, sam  # noqa: E402
from bayesgan.jax.diagnostics import generator_sharpness, hessian_eigenvalues, hessian_trace, hvp  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")

Z = np.array([[-1.0], [0.25], [0.5], [2.0]])
X = np.array([[1.5], [-0.5], [0.0], [3.0]])
A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])


def loc_model(x):
    loc = numpyro.param("loc", jnp.full((1,), 0.3))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", ndist.Delta(loc + z, event_dim=1), obs=x)


def fixed_z_model(x):
    loc = numpyro.param("loc", jnp.full((1,), 0.3))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1), obs=jnp.asarray(Z))
        numpyro.sample("x", ndist.Delta(loc + z, event_dim=1), obs=x)


def critic():
    return nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(1)])


# -- relax -------------------------------------------------------------------------------------
def test_relax_replaces_the_point_mass_by_a_normal():
    x = jnp.asarray(X)
    tr = handlers.trace(handlers.seed(relax(loc_model, scale=0.3), 0)).get_trace(x)
    fn = tr["x"]["fn"]
    assert isinstance(fn.base_dist, ndist.Normal) and bool(jnp.all(fn.base_dist.scale == 0.3))
    assert bool(jnp.all(tr["x"]["value"] == x))  # where="fake": the data are untouched
    gan = FGAN("js", generator_optimizer=optax.sgd(0.1), critic_optimizer=optax.sgd(0.1))
    state = gan.init(jax.random.key(0), relax(fixed_z_model, scale=0.3), critic(), x)
    real, fake, _ = gan.sample(jax.random.key(1), state.generator_params, x)
    noise = (fake - (0.3 + Z)) / 0.3
    assert bool(jnp.all(real == x)) and float(jnp.abs(noise).max()) > 0.1  # fakes carry sigma * eps
    _, fake_again, _ = gan.sample(jax.random.key(1), state.generator_params, x)
    assert bool(jnp.all(fake == fake_again))


def test_instance_noise_moves_the_data_too():
    x = jnp.asarray(X)
    relaxed = relax(fixed_z_model, scale=0.5, where="both")
    tr = handlers.trace(handlers.seed(relaxed, 0)).get_trace(x)
    assert not bool(jnp.allclose(tr["x"]["value"], x))
    tr2 = handlers.trace(handlers.seed(relaxed, 0)).get_trace(x)
    assert bool(jnp.all(tr["x"]["value"] == tr2["x"]["value"]))
    with pytest.raises(ValueError, match="seeded model"):
        relaxed(x)


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": 0.0}, "scale > 0"),
    ({"scale": 0.1, "where": "real"}, "where 'fake'"),
])
def test_relax_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relax(loc_model, **kwargs)


def test_relax_needs_a_point_mass():
    def normal_model(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", ndist.Normal(jnp.zeros(x.shape), 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="Delta .* actual Normal"):
        handlers.trace(relax(normal_model, scale=0.1)).get_trace(jnp.zeros((2, 1)))


# -- SAM ---------------------------------------------------------------------------------------
def quadratic_step(optimizer, w):
    loss = lambda p: 0.5 * p @ jnp.asarray(A) @ p  # noqa: E731
    grad = jax.grad(loss)
    updates, _ = optimizer.update(grad(w), optimizer.init(w), w, grad_fn=lambda p, i: grad(p))
    return optax.apply_updates(w, updates)


def test_sam_quadratic_closed_form():
    w = jnp.array([1.0, -2.0, 0.5])
    g = A @ np.asarray(w)
    want = np.asarray(w) - 0.1 * A @ (np.asarray(w) + 0.3 * g / np.linalg.norm(g))
    np.testing.assert_allclose(quadratic_step(sam(optax.sgd(0.1), rho=0.3), w), want, rtol=1e-14)
    t = np.abs(np.asarray(w)) + 0.01  # adaptive SAM: eps = rho T^2 g / ||T g||
    e = 2.0 * t**2 * g / np.linalg.norm(t * g)
    want = np.asarray(w) - 0.1 * A @ (np.asarray(w) + e)
    np.testing.assert_allclose(quadratic_step(sam(optax.sgd(0.1), rho=2.0, adaptive=True, eta=0.01), w), want, rtol=1e-14)


def test_sam_with_rho_zero_is_the_base_optimizer():
    """Five Adam steps on the quadratic, bit for bit (the GAN-level integration is checked
    against the torch side below)."""
    loss = lambda p: 0.5 * p @ jnp.asarray(A) @ p  # noqa: E731
    grad = jax.grad(loss)
    paths = []
    for optimizer in (optax.adam(0.1), sam(optax.adam(0.1), rho=0.0), sam(optax.adam(0.1), rho=0.0, adaptive=True)):
        w = jnp.array([1.0, -2.0, 0.5])
        state = optimizer.init(w)
        for _ in range(5):
            updates, state = optimizer.update(grad(w), state, w, grad_fn=lambda p, i: grad(p))
            w = optax.apply_updates(w, updates)
        paths.append(w)
    np.testing.assert_array_equal(paths[0], paths[1])
    np.testing.assert_array_equal(paths[0], paths[2])


@pytest.mark.parametrize("player, adaptive", [("generator", False), ("critic", True)])
def test_sam_step_equals_torch(player, adaptive):
    """One player under SAM: the JAX step equals the torch side's SAM(FGANLoss) svi.step."""
    torch.manual_seed(0)
    tcritic = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    params = {f"layers_{i}": {"kernel": jnp.asarray(tcritic[i].weight.detach().numpy().T),
                              "bias": jnp.asarray(tcritic[i].bias.detach().numpy())} for i in (0, 2)}

    def tmodel(x):
        loc = pyro.param("loc", lambda: torch.full((1,), 0.3))
        with pyro.plate("data", x.shape[0]):
            zz = pyro.sample("z", pdist.Normal(0.0, 1.0).expand([1]).to_event(1), obs=torch.tensor(Z))
            pyro.sample("x", pdist.Delta(loc + zz, event_dim=1), obs=x)

    rho = 0.5 if adaptive else 0.05
    svi = SVI(tmodel, lambda x: None, SGD({"lr": 0.1}),
              SAM(FGANLoss("js", tcritic), rho=rho, adaptive=adaptive, players=(player,)))
    svi.step(torch.tensor(X))
    wrap = lambda o, p: sam(o, rho=rho, adaptive=adaptive) if p == player else o  # noqa: E731
    gan = FGAN("js", generator_optimizer=wrap(optax.sgd(0.1), "generator"), critic_optimizer=wrap(optax.sgd(0.1), "critic"))
    state = gan.init(jax.random.key(0), fixed_z_model, critic(), jnp.asarray(X))
    state = state._replace(critic_params=params, critic_opt_state=gan.critic_optimizer.init(params))
    state, _ = jax.jit(gan.step)(jax.random.key(1), state, jnp.asarray(X))
    assert float(state.generator_params["loc"][0]) == pytest.approx(pyro.param("loc").item(), rel=1e-12)
    np.testing.assert_allclose(state.critic_params["layers_0"]["kernel"], tcritic[0].weight.detach().numpy().T, rtol=1e-12)
    np.testing.assert_allclose(state.critic_params["layers_2"]["bias"], tcritic[2].bias.detach().numpy(), rtol=1e-12)


def test_sam_errors():
    with pytest.raises(ValueError, match="rho >= 0"):
        sam(optax.sgd(0.1), rho=-1.0)
    with pytest.raises(ValueError, match="eta >= 0"):
        sam(optax.sgd(0.1), rho=1.0, eta=-1.0)


# -- EMA ---------------------------------------------------------------------------------------
def test_ema_closed_form_and_start():
    ema = EMA(decay=0.5, start=2)
    state = ema.init({"w": jnp.zeros(2)})
    for value in (1.0, 2.0, 4.0, 8.0):
        state = ema.update(state, {"w": jnp.full(2, value)})
    # copies at updates 0 and 1 (1, then 2), averages from update 2: 0.5 * 2 + 0.5 * 4 = 3, then 5.5
    assert state.params["w"].tolist() == [5.5, 5.5] and int(state.num_updates) == 4
    scanned, _ = jax.lax.scan(lambda s, v: (ema.update(s, {"w": v}), None), ema.init({"w": jnp.zeros(2)}),
                              jnp.array([[1.0] * 2, [2.0] * 2, [4.0] * 2, [8.0] * 2]))
    assert scanned.params["w"].tolist() == [5.5, 5.5]
    assert repr(ema) == "EMA(decay=0.5, start=2)"
    with pytest.raises(ValueError, match="0 <= decay < 1"):
        EMA(decay=1.0)
    with pytest.raises(ValueError, match="start to be an int >= 0"):
        EMA(start=-1)


# -- sharpness ---------------------------------------------------------------------------------
def test_hvp_eigenvalues_and_trace_of_a_quadratic():
    loss = lambda p: 0.5 * p["w"] @ jnp.asarray(A) @ p["w"]  # noqa: E731
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    v = {"w": jnp.array([0.3, 0.1, -1.0])}
    np.testing.assert_allclose(hvp(loss, params, v)["w"], A @ np.asarray(v["w"]), rtol=1e-14)
    np.testing.assert_allclose(hessian_eigenvalues(loss, params, k=3), np.linalg.eigvalsh(A)[::-1], rtol=1e-12)
    diagonal = lambda p: 0.5 * (jnp.array([1.0, 2.0, 3.0]) * p["w"] ** 2).sum()  # noqa: E731
    estimate, stderr = hessian_trace(diagonal, params, num_samples=10)
    assert estimate == pytest.approx(6.0, rel=1e-14) and stderr == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(ValueError, match="k to be an int >= 1"):
        hessian_eigenvalues(loss, params, k=0)
    with pytest.raises(ValueError, match="num_samples to be an int >= 1"):
        hessian_trace(loss, params, num_samples=0)
    with pytest.raises(ValueError, match="at least one parameter"):
        hessian_eigenvalues(loss, {})


def test_generator_sharpness_is_the_dense_hessian_top_eigenvalue():
    def model(x):
        w = numpyro.param("w", jnp.array([1.0, 0.5]))
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([1]).to_event(1))
            numpyro.sample("x", ndist.Delta(w[0] + w[1] * jnp.tanh(z), event_dim=1), obs=x)

    gan = FGAN("js", generator_optimizer=optax.sgd(0.1), critic_optimizer=optax.sgd(0.1))
    x = jnp.asarray(X)
    state = gan.init(jax.random.key(0), model, critic(), x)
    key = jax.random.key(3)
    model_key, _ = jax.random.split(key)

    def loss(gp):
        real, fake, _ = gan.sample(model_key, gp, x)
        cp = state.critic_params
        return gan._generator_objective(gan._critic_apply(cp, real), gan._critic_apply(cp, fake))

    dense = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda w: loss({"w": w}))(state.generator_params["w"])))
    assert float(generator_sharpness(gan, state, x, key, k=1)[0]) == pytest.approx(dense[-1], rel=1e-10)
