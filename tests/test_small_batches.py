"""Every loss steps at batch sizes 1 to 8, and a critic that cannot gives a clear error."""

import pyro
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from bayesgan.infer import SAM, FGANLoss, MMDLoss, RelativisticLoss, WassersteinLoss, WeightClipping
from bayesgan.models import GeneratorModel, prior_guide
from bayesgan.penalties import R1, GradientPenalty, WGANDiv


def _critic():
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


LOSSES = {
    "fgan": lambda: FGANLoss("js", _critic(), penalty=R1(1.0)),
    "wgan-gp": lambda: WassersteinLoss(_critic(), critic_steps=1),
    "wgan-div": lambda: WassersteinLoss(_critic(), penalty=WGANDiv(), critic_steps=1),
    "wgan-clip": lambda: WassersteinLoss(_critic(), penalty=None, constraint=WeightClipping(0.01)),
    "relativistic": lambda: RelativisticLoss(_critic(), penalty=GradientPenalty(1.0)),
    "mmd-biased": lambda: MMDLoss(),
    "sam": lambda: SAM(FGANLoss("gan", _critic()), rho=0.05),
}


@pytest.mark.parametrize("batch", [1, 2, 8])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_steps_at_small_batches(name, batch):
    pyro.set_rng_seed(0)
    generator = torch.nn.Linear(2, 2)
    svi = SVI(GeneratorModel(generator, 2), prior_guide, Adam({"lr": 1e-2}), loss=LOSSES[name]())
    for _ in range(3):
        losses = svi.step(torch.randn(batch, 2))
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_unbiased_mmd_needs_two_samples():
    svi = SVI(GeneratorModel(torch.nn.Linear(2, 2), 2), prior_guide, Adam({"lr": 1e-2}),
              loss=MMDLoss(estimator="unbiased"))
    with pytest.raises(ValueError, match="at least 2 samples"):
        svi.step(torch.randn(1, 2))


def test_batchnorm_critic_at_batch_one_names_the_fix():
    critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    svi = SVI(GeneratorModel(torch.nn.Linear(2, 2), 2), prior_guide, Adam({"lr": 1e-2}),
              loss=FGANLoss("js", critic))
    with pytest.raises(ValueError, match="BatchNorm1d.*batch size 1.*GroupNorm"):
        svi.step(torch.randn(1, 2))
    critic.eval()  # running statistics: a single sample is fine
    assert len(svi.step(torch.randn(1, 2))) == 2


def test_spectrally_normalized_critic_trains_with_pyro():
    """Spectral normalization is the fourth Lipschitz option: a parametrized critic registers
    with Pyro and its original weight is what SVI's optimizer steps."""
    pyro.set_rng_seed(0)
    sn = torch.nn.utils.parametrizations.spectral_norm
    critic = torch.nn.Sequential(sn(torch.nn.Linear(2, 16)), torch.nn.ReLU(), sn(torch.nn.Linear(16, 1)))
    loss = WassersteinLoss(critic, penalty=None, critic_steps=1)
    svi = SVI(GeneratorModel(torch.nn.Linear(2, 2), 2), prior_guide, Adam({"lr": 1e-2}), loss=loss)
    before = critic[0].parametrizations.weight.original.detach().clone()
    for _ in range(5):
        svi.step(torch.randn(32, 2))
    assert not torch.equal(before, critic[0].parametrizations.weight.original)
    sigma = torch.linalg.matrix_norm(critic[0].weight.detach(), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.05)
