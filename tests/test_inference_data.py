"""ArviZ objects: the linear-Gaussian case checked against its closed form, LOO, WAIC, compare."""

import warnings

import numpy as np
import pyro
import pytest
import torch
import xarray as xr
from pyro.infer import SVI

from bayesgan.diagnostics import log_likelihood_draws, relaxed_log_likelihood, to_inference_data
from bayesgan.diagnostics.inference_data import _wrap
from bayesgan.infer import FGANLoss
from bayesgan.models import GeneratorModel, WeightGuide, make_stochastic, prior_guide
from bayesgan.nn import QuadraticCritic
from bayesgan.optim import Adam

az = pytest.importorskip("arviz")

pytestmark = [
    pytest.mark.usefixtures("float64"),
    # ArviZ warns at its own Pareto-k threshold; the tests assert the k values they accept.
    pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto distribution:UserWarning"),
    # arviz.compare (0.23) calls a pandas keyword that pandas 3.1 deprecates: not ours to fix.
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.sort_values"),
]

W_TRUE = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
B_TRUE = torch.tensor([0.3, -0.2], dtype=torch.float64)
SIGMA = 0.5


def _exact_log_lik(W, b, x):
    """log N(x | b, W W^T + sigma^2 I), the probabilistic-PCA marginal (Tipping & Bishop)."""
    cov = W @ W.transpose(-1, -2) + SIGMA**2 * torch.eye(W.shape[-2])
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def _heldout(n=40, seed=1):
    """Points from the model with |z| <= 2: the Parzen estimate samples z from its prior, so a
    point far in the tail (|z| ~ 4) needs far more than the S used here (its standard error
    says so)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g, dtype=torch.float64).clamp(-2.0, 2.0)
    return z @ W_TRUE.T + B_TRUE + SIGMA * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _random_weight_model(loc_scale=0.1):
    """A linear generator whose W is random, with a guide N(W_true, loc_scale^2) set by hand."""
    G = torch.nn.Linear(1, 2)
    with torch.no_grad():
        G.bias.copy_(B_TRUE)
    make_stochastic(G, "weight", prior_scale=1.0)
    model = GeneratorModel(G, latent_dim=1, scale=SIGMA)
    guide = WeightGuide(model, init_values={"generator.weight": W_TRUE.clone()}, init_scale=loc_scale)
    return model, guide


def _deterministic_model(W, b):
    G = torch.nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        G.weight.copy_(W)
        G.bias.copy_(b)
    return GeneratorModel(G, latent_dim=W.shape[1], scale=SIGMA)


def test_log_likelihood_group_matches_the_closed_form_per_draw():
    model, guide = _random_weight_model()
    x = _heldout()
    idata = to_inference_data(model, x, scale=SIGMA, guide=guide, num_draws=50, num_samples=20_000)
    W = torch.as_tensor(idata.posterior["generator.weight"].values[0])
    assert W.shape == (50, 2, 1) and W.std(0).min() > 0.05  # the draws are the guide's
    exact = _exact_log_lik(W[:, None], B_TRUE, x[None])  # [draw, point]
    got = torch.as_tensor(idata.log_likelihood["x"].values[0])
    error = (got - exact).abs()
    assert error.quantile(0.99) < 0.1 and error.max() < 0.5  # measured: 0.05-0.06 and 0.14-0.23
    assert (got - exact).mean().abs() < 0.005  # measured: 3e-4 at most over three seeds


def test_loo_agrees_with_the_exact_heldout_log_likelihood():
    model, guide = _random_weight_model(loc_scale=0.05)
    x = _heldout()
    idata = to_inference_data(model, x, scale=SIGMA, guide=guide, num_draws=200, num_samples=5000)
    loo = az.loo(idata, pointwise=True)
    assert np.all(loo.pareto_k.values < 0.7)  # measured: 0.20-0.51 over three seeds
    # The exact log posterior-predictive density, over the same draws of W.
    W = torch.as_tensor(idata.posterior["generator.weight"].values[0])
    exact = _exact_log_lik(W[:, None], B_TRUE, x[None])
    elpd = (torch.logsumexp(exact, 0) - np.log(exact.shape[0])).sum().item()
    assert loo.elpd_loo == pytest.approx(elpd, abs=1.0)  # measured: 0.45-0.50 (that is p_loo)
    assert loo.elpd_loo == pytest.approx(_exact_log_lik(W_TRUE, B_TRUE, x).sum().item(), abs=1.0)
    assert 0 < loo.p_loo < 2  # one random 2x1 matrix, concentrated: a fraction of a parameter
    waic = az.waic(idata)
    assert waic.elpd_waic == pytest.approx(loo.elpd_loo, abs=0.2)


def test_relaxed_log_likelihood_averages_over_weight_draws():
    model, guide = _random_weight_model(loc_scale=0.2)
    x = _heldout(n=10)
    estimate, stderr = relaxed_log_likelihood(model, x, scale=SIGMA, guide=guide, num_draws=400, num_samples=2000)
    W = guide.sites and torch.distributions.Normal(W_TRUE, 0.2).sample((20_000,))
    exact = torch.logsumexp(_exact_log_lik(W[:, None], B_TRUE, x[None]), 0) - np.log(W.shape[0])
    assert torch.all((estimate - exact).abs() < 4 * stderr + 0.01)
    assert torch.all(stderr < 0.05)
    draws = log_likelihood_draws(model, x, scale=SIGMA, guide=guide, num_draws=3, num_samples=100)
    assert draws.shape == (3, 10)


def _train(data, steps=600, seed=0):
    """A deterministic linear generator fitted by the KL objective with a quadratic critic."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    G = torch.nn.Linear(1, 2)
    model = GeneratorModel(G, latent_dim=1, scale=SIGMA)
    critic = QuadraticCritic(2, zero_init=False)
    svi = SVI(model, prior_guide, Adam({"lr": 0.02, "betas": (0.5, 0.999)}), loss=FGANLoss("kl", critic))
    for step in range(steps):
        svi.step(data[torch.randint(len(data), (128,))])
    return model


def test_compare_ranks_the_model_trained_on_the_right_data_first():
    train = _heldout(n=2000, seed=2)
    right, shifted = _train(train), _train(train + torch.tensor([1.5, 0.0]))
    x = _heldout(n=60, seed=3)
    models = {
        name: to_inference_data(m, x, scale=SIGMA, num_draws=100, num_samples=2000)
        for name, m in {"right": right, "shifted": shifted}.items()
    }
    table = az.compare(models)
    assert table.index[0] == "right"
    assert table.loc["shifted", "elpd_diff"] > 4 * table.loc["shifted", "dse"] > 0  # measured: 107 vs 15
    # Deterministic weights: the draws differ by Monte Carlo noise only.
    loo = az.loo(models["right"])
    assert abs(loo.p_loo) < 0.5
    exact = _exact_log_lik(right.generator.weight.detach(), right.generator.bias.detach(), x).sum().item()
    assert loo.elpd_loo == pytest.approx(exact, abs=0.5)


def _history():
    return [
        {"critic_loss": 1.0 + i, "generator_loss": -i, "divergence": 0.1 * i, "step": i, "generator_updated": i % 2 == 1}
        for i in range(6)
    ] + [{"critic_loss": 7.0, "generator_loss": -6.0, "sharpness": 3.5, "step": 6, "generator_updated": True}]


def test_groups_dims_and_training_traces():
    model, guide = _random_weight_model()
    x = _heldout(n=12)
    idata = to_inference_data(model, x, scale=SIGMA, guide=guide, num_draws=5, num_chains=2, num_samples=50,
                              history=_history(), protocol={"data": "ppca", "steps": 7})
    assert set(idata.groups()) == {"posterior", "log_likelihood", "posterior_predictive", "observed_data", "sample_stats"}
    assert idata.posterior["predictive_mean"].dims == ("chain", "draw", "predictive_mean_dim_0")
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "x_dim_0")
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "x_dim_0", "x_dim_1")
    assert idata.posterior_predictive["x"].shape == (2, 5, 12, 2)
    assert np.array_equal(idata.observed_data["x"].values, x.numpy())
    stats = idata.sample_stats
    assert stats["critic_loss"].dims == ("step",) and list(stats["step"].values) == list(range(7))
    assert np.isnan(stats["sharpness"].values[:6]).all() and stats["sharpness"].values[6] == 3.5
    assert stats["generator_updated"].values.tolist() == [0, 1, 0, 1, 0, 1, 1]
    attrs = idata.log_likelihood.attrs
    assert attrs["scale"] == SIGMA and attrs["num_samples"] == 50 and attrs["data"] == "ppca"
    assert attrs["random_weights"] == '["generator.weight"]'
    assert az.loo(idata).elpd_loo < 0  # two chains: ArviZ's relative ESS uses the posterior


def test_history_as_columns_and_other_predictive_sizes():
    model = _deterministic_model(W_TRUE, B_TRUE)
    x = _heldout(n=8)
    idata = to_inference_data(model, x, scale=SIGMA, num_draws=3, num_samples=20, num_predictive=5,
                              history={"critic_loss": [1.0, 2.0], "generator_loss": [0.5, 0.25]})
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "sample", "x_dim_1")
    assert list(idata.sample_stats["step"].values) == [0, 1]
    assert list(idata.posterior.data_vars) == ["predictive_mean"]
    idata = to_inference_data(model, x, scale=SIGMA, num_draws=2, num_samples=20, num_predictive=0)
    assert "posterior_predictive" not in idata.groups() and "sample_stats" not in idata.groups()


def test_round_trip_through_netcdf(tmp_path):
    model, guide = _random_weight_model()
    x = _heldout(n=10)
    idata = to_inference_data(model, x, scale=SIGMA, guide=guide, num_draws=4, num_samples=30, history=_history())
    path = tmp_path / "run.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        xr.testing.assert_allclose(getattr(back, group), getattr(idata, group))
    assert back.posterior.attrs["scale"] == SIGMA


def test_datatree_flavour_round_trips(tmp_path):
    """The ArviZ 1.x object (an xarray DataTree), built here without ArviZ 1.x."""
    model = _deterministic_model(W_TRUE, B_TRUE)
    x = _heldout(n=6)
    idata = to_inference_data(model, x, scale=SIGMA, num_draws=3, num_samples=30, history=_history())
    groups = {name: getattr(idata, name) for name in idata.groups()}
    tree = _wrap(groups, flavor="datatree")
    assert set(tree.children) == set(groups)
    path = tmp_path / "tree.nc"
    tree.to_netcdf(str(path))
    back = xr.open_datatree(str(path))
    for name, dataset in groups.items():
        xr.testing.assert_allclose(back[name].to_dataset(), dataset)
    back.close()


def test_plot_ppc_and_arviz_plots_run_on_the_object():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, guide = _random_weight_model()
    x = _heldout(n=20)
    idata = to_inference_data(model, x, scale=SIGMA, guide=guide, num_draws=20, num_samples=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own plotting deprecations are not ours
        az.plot_ppc(idata, num_pp_samples=5)
        az.plot_posterior(idata, var_names=["generator.weight"])
        az.plot_khat(az.loo(idata, pointwise=True))
    plt.close("all")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_chains": 0}, "Expected num_chains to be an int >= 1, actual 0"),
        ({"num_predictive": -1}, "Expected num_predictive to be an int >= 0, actual -1"),
        ({"num_draws": 0}, "Expected num_draws to be an int >= 1, actual 0"),
        ({"scale": 0.0}, "Expected scale > 0"),
        ({"obs_site": "y"}, "Expected the model to have a site 'y'"),
        ({"history": [1, 2]}, "Expected history as a list of dicts"),
        ({"history": {"a": [1.0], "b": [1.0, 2.0]}}, r"one length, actual lengths \[1, 2\]"),
    ],
)
def test_errors(kwargs, match):
    model = _deterministic_model(W_TRUE, B_TRUE)
    args = {"scale": SIGMA, "num_draws": 2, "num_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        to_inference_data(model, _heldout(n=4), **args)


def test_bad_data_is_named():
    model = _deterministic_model(W_TRUE, B_TRUE)
    with pytest.raises(ValueError, match="Expected finite held-out data"):
        to_inference_data(model, torch.full((3, 2), float("nan")), scale=SIGMA, num_draws=2, num_samples=10)
    with pytest.raises(ValueError, match="generator's size 2, actual 3"):
        to_inference_data(model, torch.zeros(3, 3), scale=SIGMA, num_draws=2, num_samples=10)
