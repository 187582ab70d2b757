"""The Dirac-GAN (tests/test_dirac.py) on the JAX side: with simultaneous SGD the JAX pair's
trajectory equals the torch side's svi.step iterate for iterate (1e-10, float64), and R1
converges to the table's values. The JAX run is one jit-compiled lax.scan of 500 steps."""

import math

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
from test_dirac import H, STEPS, make_critic, norm, one_point, quantile_noise, run  # noqa: E402

from bayesgan.infer import FGANLoss, WassersteinLoss, WeightClipping  # noqa: E402
from bayesgan.jax import FGAN, Wasserstein  # noqa: E402
from bayesgan.jax import penalties as jpen  # noqa: E402
from bayesgan.penalties import R1  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")


def dirac_model(offsets):
    def model(x):
        theta = numpyro.param("theta", jnp.ones(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", ndist.Delta(theta + offsets, event_dim=1), obs=x)

    return model


def jax_run(objective, data, offsets, steps=STEPS, psi_paper=1.0):
    """The JAX pair with optax.sgd(h); the iterates (theta, psi_paper), start included."""
    data, offsets = jnp.asarray(data.numpy()), jnp.asarray(offsets.numpy())
    critic = nn.Dense(1, use_bias=False)
    state = objective.init(jax.random.key(0), dirac_model(offsets), critic, data)
    params = {"kernel": jnp.full((1, 1), -psi_paper)}
    state = state._replace(critic_params=params, critic_opt_state=objective.critic_optimizer.init(params))
    project = objective.constraint or (lambda p: p)

    def body(state, key):
        state, _ = objective.step(key, state, data)
        point = jnp.stack([state.generator_params["theta"][0], -project(state.critic_params)["kernel"][0, 0]])
        return state, point

    _, points = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(state, jax.random.split(jax.random.key(1), steps))
    return np.concatenate([[[1.0, psi_paper]], np.asarray(points)])


def gan(penalty=None):
    return FGAN("gan", generator_optimizer=optax.sgd(H), critic_optimizer=optax.sgd(H),
                generator_objective="saturating", penalty=penalty)


def assert_same_path(jax_path, torch_path, atol=1e-10):
    torch_path = np.asarray(torch_path)
    assert jax_path.shape == torch_path.shape
    np.testing.assert_allclose(jax_path, torch_path, rtol=0, atol=atol)
    return float(np.abs(jax_path - torch_path).max())


def test_gan_does_not_converge():
    ours = jax_run(gan(), *one_point())
    assert_same_path(ours, run(FGANLoss("gan", make_critic(), generator_objective="saturating"), *one_point()))
    assert norm(ours[-1]) == pytest.approx(3.097, abs=1e-3)


def test_wgan_with_weight_clipping_does_not_converge():
    objective = Wasserstein(generator_optimizer=optax.sgd(H), critic_optimizer=optax.sgd(H), penalty=None,
                            constraint=jpen.WeightClipping(1.0), critic_steps=1)
    ours = jax_run(objective, *one_point())
    torch_loss = WassersteinLoss(make_critic(), penalty=None, constraint=WeightClipping(1.0), critic_steps=1)
    assert_same_path(ours, run(torch_loss, *one_point()))
    assert norm(ours[-1]) == pytest.approx(1.00, abs=0.01)
    assert min(norm(p) for p in ours[-100:]) > 0.5


@pytest.mark.parametrize("gamma, table, bound", [(0.3, 2.6e-6, 1e-5), (1.0, 1e-21, 1e-10)])
def test_r1_converges(gamma, table, bound):
    ours = jax_run(gan(jpen.R1(gamma)), *one_point())
    theirs = run(FGANLoss("gan", make_critic(), generator_objective="saturating", penalty=R1(gamma)), *one_point())
    assert_same_path(ours, theirs)
    final = norm(ours[-1])
    assert final == pytest.approx(norm(theirs[-1]), rel=1e-6)
    assert final < bound
    assert table / 2 < final < table * 2


def test_instance_noise_converges():
    """The fixed symmetric noise set of tests/test_dirac.py (n = 128): 6.5e-5 after 500 steps."""
    noise = quantile_noise(0.7, 128)
    ours = jax_run(gan(), noise, noise)
    pyro.clear_param_store()
    assert_same_path(ours, run(FGANLoss("gan", make_critic(), generator_objective="saturating"), noise, noise))
    assert norm(ours[-1]) == pytest.approx(6.5e-5, rel=0.05)


def test_one_step_is_the_paper_field():
    """From (theta, psi_p) = (0.8, -0.6), one step moves by h times the paper's vector field."""
    ours = jax_run(gan(), *one_point(), steps=1, psi_paper=-0.6)
    theta0 = 1.0  # the model's initial theta
    f_prime = 1.0 / (1.0 + math.exp(-0.6 * theta0))
    v1, v2 = 0.6 * f_prime, theta0 * f_prime
    assert ours[1] == pytest.approx([theta0 + H * v1, -0.6 + H * v2], rel=1e-14)
