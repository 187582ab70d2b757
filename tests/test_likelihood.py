"""The relaxed likelihood against the linear-Gaussian (probabilistic PCA) closed form, and MC dropout."""

import pyro
import pytest
import torch
from pyro.infer import Predictive

from bayesgan.diagnostics import relaxed_log_likelihood
from bayesgan.handlers import mc_dropout
from bayesgan.models import GeneratorModel

pytestmark = pytest.mark.usefixtures("float64")


def _linear_model(W, b):
    G = torch.nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        G.weight.copy_(W)
        G.bias.copy_(b)
    return GeneratorModel(G, latent_dim=W.shape[1])


def test_relaxed_log_likelihood_converges_to_the_ppca_marginal():
    """x = W z + b + sigma eps has p(x) = N(b, W W^T + sigma^2 I) exactly (Tipping & Bishop)."""
    pyro.set_rng_seed(0)
    W = torch.tensor([[1.0, 0.3], [-0.4, 0.8], [0.2, 0.5]])
    b = torch.tensor([0.5, -1.0, 2.0])
    sigma = 0.7
    exact = torch.distributions.MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(3))
    x = exact.sample((5,))
    estimate, stderr = relaxed_log_likelihood(_linear_model(W, b), x, scale=sigma, num_samples=200_000)
    truth = exact.log_prob(x)
    assert torch.all((estimate - truth).abs() < 4 * stderr + 1e-3)
    assert torch.all((estimate - truth).abs() < 0.02)
    assert torch.all(stderr < 0.01)


def test_relaxed_log_likelihood_errors():
    model = _linear_model(torch.eye(2), torch.zeros(2))
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="scale > 0"):
        relaxed_log_likelihood(model, x, scale=0.0)
    with pytest.raises(ValueError, match="num_samples"):
        relaxed_log_likelihood(model, x, scale=1.0, num_samples=1)
    with pytest.raises(ValueError, match="site 'y'"):
        relaxed_log_likelihood(model, x, scale=1.0, obs_site="y")
    with pytest.raises(ValueError, match="generator's size 2, actual 3"):
        relaxed_log_likelihood(model, torch.zeros(3, 3), scale=1.0)


def _dropout_generator():
    return torch.nn.Sequential(
        torch.nn.Linear(2, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(32, 2),
    ).double()


def test_mc_dropout_draws_differ_for_a_fixed_z_and_batchnorm_is_in_eval_mode():
    pyro.set_rng_seed(0)
    G = _dropout_generator()
    G(torch.randn(16, 2))  # running statistics away from their initial values
    G.eval()
    z = torch.randn(4, 2)
    assert torch.equal(G(z), G(z))
    G.train()
    with mc_dropout(G):
        assert not G[1].training and G[3].training
        first, second = G(z), G(z)
        assert not torch.allclose(first, second)
        running = G[1].running_mean.clone()
        G(z)
        assert torch.equal(running, G[1].running_mean)  # eval-mode BatchNorm does not update
    assert G.training and G[1].training  # modes restored


def test_mc_dropout_with_predictive_gives_weight_uncertainty():
    pyro.set_rng_seed(0)
    G = _dropout_generator()
    model = GeneratorModel(G, latent_dim=2)
    z = torch.randn(1, 5, 2)
    with mc_dropout(G):
        draws = Predictive(model, posterior_samples={"z": z.expand(3, 5, 2)}, return_sites=["x"])(num_samples=5)["x"]
    assert draws.shape == (3, 5, 2)
    assert not torch.allclose(draws[0], draws[1])  # same z, different dropout masks
    G.eval()
    fixed = Predictive(model, posterior_samples={"z": z.expand(3, 5, 2)}, return_sites=["x"])(num_samples=5)["x"]
    assert torch.equal(fixed[0], fixed[1])


def test_mc_dropout_rejects_non_modules():
    with pytest.raises(ValueError, match="torch.nn.Module"):
        with mc_dropout("generator"):
            pass


@pytest.mark.parametrize("layer, shape", [(torch.nn.Dropout(0.5), (6, 8)), (torch.nn.Dropout2d(0.5), (6, 8, 3, 3))])
def test_shared_masks_make_each_forward_pass_one_weight_draw(layer, shape):
    pyro.set_rng_seed(0)
    x = torch.randn(shape[1:]).expand(shape)  # six identical rows
    with mc_dropout(layer, shared=True):
        first, second = layer(x), layer(x)
    assert torch.equal(first, first[:1].expand(shape))  # one mask for the batch
    assert not torch.equal(first, second)  # a new mask for each pass
    kept = first[0] != 0
    if isinstance(layer, torch.nn.Dropout2d):  # whole channels are kept or dropped
        assert torch.equal(kept, kept[:, :1, :1].expand_as(kept))
    assert torch.allclose(first[0][kept], 2 * x[0][kept])  # inverted dropout: scaled by 1/(1-p)
    with mc_dropout(layer):  # back to one mask per sample
        per_sample = layer(x)
    assert not torch.equal(per_sample, per_sample[:1].expand(shape))
    assert "forward" not in layer.__dict__


def test_shared_masks_give_per_draw_likelihoods():
    """With one mask per draw, the draws of the pointwise log-likelihood differ by more than
    the latent Monte Carlo noise, so ArviZ sees a posterior over the weights."""
    from bayesgan.diagnostics import log_likelihood_draws

    pyro.set_rng_seed(0)
    G = _dropout_generator()
    model = GeneratorModel(G, latent_dim=2)
    x = torch.randn(5, 2)
    with mc_dropout(G, shared=True):
        shared = log_likelihood_draws(model, x, scale=0.5, num_draws=20, num_samples=4000)
    with mc_dropout(G):
        mixed = log_likelihood_draws(model, x, scale=0.5, num_draws=20, num_samples=4000)
    assert (shared.std(0) > 3 * mixed.std(0)).all()


def test_shared_masks_reject_alpha_dropout():
    with pytest.raises(ValueError, match="actual AlphaDropout"):
        with mc_dropout(torch.nn.AlphaDropout(0.1), shared=True):
            pass
