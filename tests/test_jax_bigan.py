"""BiGAN on the JAX side: one step equals the torch side's BiGANLoss svi.step (same z, data,
encoder and critic weights, SGD, float64) for both generator objectives and with a pair penalty,
and every ValueError."""

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
from numpyro.contrib.module import flax_module  # noqa: E402
from pyro.infer import SVI  # noqa: E402
from pyro.optim import SGD  # noqa: E402

from bayesgan import penalties as tpen  # noqa: E402
from bayesgan.infer import BiGANLoss  # noqa: E402
from bayesgan.jax import BiGAN  # noqa: E402
from bayesgan.jax import penalties as jpen  # noqa: E402
from bayesgan.nn import JointCritic  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")

Z = np.array([[-1.0, 0.3], [0.25, -0.7], [0.5, 1.1], [2.0, 0.0]])
X = np.array([[1.5, 0.2], [-0.5, 0.9], [0.0, -0.3], [3.0, 1.0]])


class Joint(nn.Module):
    @nn.compact
    def __call__(self, x, z):
        h = jnp.tanh(nn.Dense(8)(jnp.concatenate([x, z], -1)))
        return nn.Dense(1)(h)


def jmodel(x):
    loc = numpyro.param("loc", jnp.array([0.3, -0.2]))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=jnp.asarray(Z))
        numpyro.sample("x", ndist.Delta(loc + jnp.tanh(z), event_dim=1), obs=x)


def jguide(x):
    encoder = flax_module("encoder", nn.Dense(2), input_shape=(1, 2))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("z", ndist.Delta(encoder(x), event_dim=1))


def dense(layer):
    return {"kernel": jnp.asarray(layer.weight.detach().numpy().T), "bias": jnp.asarray(layer.bias.detach().numpy())}


@pytest.mark.parametrize("objective, penalty", [("nonsaturating", None), ("saturating", None), ("nonsaturating", "r1")])
def test_one_step_equals_torch(objective, penalty):
    torch.manual_seed(0)
    encoder = torch.nn.Linear(2, 2)
    head = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    tcritic = JointCritic(torch.nn.Identity(), torch.nn.Identity(), head)
    critic_params = {"Dense_0": dense(head[0]), "Dense_1": dense(head[2])}
    encoder_params = dense(encoder)

    def tmodel(x):
        loc = pyro.param("loc", lambda: torch.tensor([0.3, -0.2]))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pdist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=torch.tensor(Z))
            pyro.sample("x", pdist.Delta(loc + torch.tanh(z), event_dim=1), obs=x)

    def tguide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pdist.Delta(encoder(x), event_dim=1))

    tloss = BiGANLoss(tcritic, generator_objective=objective, penalty=tpen.R1(2.0) if penalty else None)
    svi = SVI(tmodel, tguide, SGD({"lr": 0.05}), tloss)
    c_loss, g_loss = svi.step(torch.tensor(X))

    gan = BiGAN(generator_optimizer=optax.sgd(0.05), critic_optimizer=optax.sgd(0.05), generator_objective=objective,
                penalty=jpen.R1(2.0) if penalty else None)
    state = gan.init(jax.random.key(0), jmodel, Joint(), jnp.asarray(X), guide=jguide)
    gp = dict(state.generator_params, **{"encoder$params": encoder_params})
    state = state._replace(generator_params=gp, critic_params=critic_params,
                           generator_opt_state=gan.generator_optimizer.init(gp),
                           critic_opt_state=gan.critic_optimizer.init(critic_params))
    state, info = jax.jit(gan.step)(jax.random.key(1), state, jnp.asarray(X))
    assert float(info.critic_loss) == pytest.approx(c_loss, rel=1e-12)
    assert float(info.generator_loss) == pytest.approx(g_loss, rel=1e-12)
    assert float(info.penalty) == pytest.approx(tloss.last["penalty"], rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(state.generator_params["loc"], pyro.param("loc").detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(state.generator_params["encoder$params"]["kernel"], encoder.weight.detach().numpy().T,
                               rtol=1e-12)
    np.testing.assert_allclose(state.critic_params["Dense_0"]["kernel"], head[0].weight.detach().numpy().T, rtol=1e-12)


def test_errors():
    sgd = optax.sgd(0.1)
    x = jnp.asarray(X)
    with pytest.raises(ValueError, match="latent_site to be a site name other than"):
        BiGAN(generator_optimizer=sgd, critic_optimizer=sgd, latent_site="x")
    gan = BiGAN(generator_optimizer=sgd, critic_optimizer=sgd)
    with pytest.raises(ValueError, match="an encoder guide"):
        gan.init(jax.random.key(0), jmodel, Joint(), x)

    def no_z(x):
        pass

    with pytest.raises(ValueError, match="guide to sample the latent site 'z'"):
        gan.init(jax.random.key(0), jmodel, Joint(), x, guide=no_z)

    def discrete(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", ndist.Bernoulli(0.5 * jnp.ones(2)).to_event(1))

    with pytest.raises(ValueError, match="reparameterized guide site"):
        gan.init(jax.random.key(0), jmodel, Joint(), x, guide=discrete)

    def narrow(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", ndist.Delta(x[:, :1], event_dim=1))

    with pytest.raises(ValueError, match="the model's shape"):
        gan.init(jax.random.key(0), jmodel, Joint(), x, guide=narrow)
