"""The JAX divergences against the torch side: every function and both players' losses agree
to 1e-6 in float64 on the same inputs and critic weights; Fenchel-Young and optimal-critic
identities on the JAX side."""

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("numpyro")
pytest.importorskip("optax")
pytest.importorskip("flax")

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

from bayesgan import divergences as tdiv  # noqa: E402
from bayesgan.infer import FGANLoss  # noqa: E402
from bayesgan.jax import FGAN  # noqa: E402
from bayesgan.jax import divergences as jdiv  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64", "jax_x64")

CASES = [(n, {}) for n in jdiv.names() if n not in ("alpha", "weighted_js")] + [
    ("alpha", {"alpha": 0.5}), ("alpha", {"alpha": 2.0}), ("alpha", {"alpha": -1.0}),
    ("weighted_js", {"pi": 0.5}), ("weighted_js", {"pi": 0.3}),
]
IDS = [f"{n}{kw.get('alpha', kw.get('pi', ''))}" for n, kw in CASES]


def both(name, kwargs):
    return tdiv.get(name, **kwargs), jdiv.get(name, **kwargs)


def close(a, b, atol=1e-6):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b.detach().numpy() if torch.is_tensor(b) else b)
    assert a.shape == b.shape
    assert np.array_equal(np.isinf(a), np.isinf(b))
    finite = np.isfinite(a)
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-6, atol=atol)
    return float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))


def test_names_and_reprs_match_the_torch_side():
    assert jdiv.names() == tdiv.names()
    for n in tdiv.names():
        assert repr(jdiv.get(n)) == repr(tdiv.get(n))
        assert jdiv.get(n).name == tdiv.get(n).name
        assert jdiv.get(n).default_generator_objective == tdiv.get(n).default_generator_objective
    assert repr(jdiv.get("alpha", alpha=2.0)) == repr(tdiv.get("alpha", alpha=2.0))
    assert jdiv.get(jdiv.get("kl")).name == "kl"


@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_every_function_matches_torch(name, kwargs):
    t, j = both(name, kwargs)
    u = np.array([0.05, 0.3, 0.9, 1.0, 1.7, 4.0, 20.0])
    v = np.linspace(-40.0, 40.0, 81)
    tt = np.linspace(-3.0, 3.0, 61)
    close(j.f(jnp.asarray(u)), t.f(torch.tensor(u)))
    close(j.f_prime(jnp.asarray(u)), t.f_prime(torch.tensor(u)))
    close(j.activation(jnp.asarray(v)), t.activation(torch.tensor(v)))
    close(j.f_star_activation(jnp.asarray(v[np.abs(v) <= 20])), t.f_star_activation(torch.tensor(v[np.abs(v) <= 20])))
    close(j.f_star(jnp.asarray(tt)), t.f_star(torch.tensor(tt)))
    if jdiv.get(name, **kwargs).name != "total_variation":
        w = t.f_prime(torch.tensor(u))
        close(j.ratio(jnp.asarray(w.numpy())), t.ratio(w))


@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_fenchel_young_and_optimal_critic(name, kwargs):
    d = jdiv.get(name, **kwargs)
    u = jnp.array([0.05, 0.3, 0.9, 1.7, 4.0])
    t = jnp.linspace(-2.0, 2.0, 41)
    # f(u) + f*(t) >= u t for all (u, t); equality at t = f'(u).
    gap = d.f(u)[:, None] + d.f_star(t)[None, :] - u[:, None] * t[None, :]
    assert bool(jnp.all(gap >= -1e-12))
    if jdiv.get(name, **kwargs).name != "total_variation":
        tp = d.f_prime(u)
        np.testing.assert_allclose(d.f_star(tp), u * tp - d.f(u), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.ratio(tp), u, rtol=1e-10)  # the optimal critic reads p/q back
    v = jnp.linspace(-8.0, 8.0, 33)
    np.testing.assert_allclose(d.f_star_activation(v), d.f_star(d.activation(v)), rtol=1e-9, atol=1e-12)
    want = -np.log(4.0) if d.name == "gan" else 0.0  # the original GAN's f(1) = -log 4
    assert float(d.f(jnp.array(1.0))) == pytest.approx(want, abs=1e-15)


def mlp_pair(seed=0, width=8):
    torch.manual_seed(seed)
    tmod = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
    jmod = nn.Sequential([nn.Dense(width), nn.tanh, nn.Dense(1)])
    params = {
        f"layers_{i}": {"kernel": jnp.asarray(tmod[k].weight.detach().numpy().T), "bias": jnp.asarray(tmod[k].bias.detach().numpy())}
        for i, k in ((0, 0), (2, 2))
    }
    return tmod, jmod, params


@pytest.mark.parametrize("objective", ["saturating", "nonsaturating"])
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_losses_match_torch(name, kwargs, objective):
    tmod, jmod, params = mlp_pair()
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(64, 2, generator=g) * 2, torch.randn(64, 2, generator=g) + 1
    tloss = FGANLoss(tdiv.get(name, **kwargs), tmod, generator_objective=objective)
    jloss = FGAN(jdiv.get(name, **kwargs), generator_optimizer=optax.sgd(0.1), critic_optimizer=optax.sgd(0.1),
                 generator_objective=objective)
    with torch.no_grad():
        tv_real, tv_fake = tmod(real), tmod(fake)
        tc, trec = tloss._critic_objective(tv_real, tv_fake)
        tg = tloss._generator_objective(tv_real, tv_fake)
    apply = lambda x: jmod.apply({"params": params}, jnp.asarray(x.numpy()))  # noqa: E731
    jv_real, jv_fake = apply(real), apply(fake)
    close(jv_real, tv_real, atol=1e-12)
    jc, jrec = jloss._critic_objective(jv_real, jv_fake)
    jg = jloss._generator_objective(jv_real, jv_fake)
    close(jc, tc)
    close(jg, tg)
    for key in ("critic_real", "critic_fake", "divergence"):
        close(jrec[key], trec[key])
