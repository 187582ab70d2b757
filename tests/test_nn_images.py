"""The image networks: output shapes and ranges at every size, the paper's layer counts and
dropout placements, spectral normalization, leading batch shapes inside Pyro plates, and image
observation sites through SVI.step with every loss; every ValueError branch."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive
from pyro.optim import Adam

from bayesgan.handlers import mc_dropout
from bayesgan.infer import SAM, FGANLoss, MMDLoss, RelativisticLoss, WassersteinLoss
from bayesgan.models import prior_guide
from bayesgan.nn import IMAGE_SIZES, DCGANCritic, DCGANGenerator, ResNetCritic, ResNetGenerator
from bayesgan.penalties import GradientPenalty
from helpers import check_valid_steps, snapshot, unchanged

pytestmark = pytest.mark.usefixtures("float64")

LATENT = 8


def _width(size):
    return 4 if size <= 32 else 2


def image_model(G, latent_dim=LATENT):
    """The image observation site of the issue: x ~ Delta(G(z), event_dim=3) in a data plate."""

    def model(x=None, num_samples=None):
        pyro.module("generator", G)
        n = x.shape[0] if x is not None else num_samples
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([latent_dim]).to_event(1))
            return pyro.sample("x", dist.Delta(G(z), event_dim=3), obs=x)

    return model


def _saturate(G):
    """Scale the last convolution so the Tanh saturates: the output range is then tested at its ends."""
    last = [m for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
    with torch.no_grad():
        last.weight.mul_(1e4)


# -- shapes and ranges ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", IMAGE_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_and_range(size, channels):
    G = DCGANGenerator(LATENT, image_size=size, channels=channels, width=_width(size), dropout=0.2)
    D = DCGANCritic(image_size=size, channels=channels, width=_width(size), batchnorm=True, dropout=0.2)
    _saturate(G)
    x = G(torch.randn(3, LATENT))
    assert x.shape == (3, channels, size, size)
    assert x.abs().max() <= 1.0 and x.abs().max() > 0.999
    v = D(x)
    assert v.shape == (3, 1) and torch.isfinite(v).all()


def test_resnet_shapes_and_range():
    G = ResNetGenerator(LATENT, channels=3, width=4, dropout=0.2)
    D = ResNetCritic(channels=3, width=4, dropout=0.2)
    _saturate(G)
    x = G(torch.randn(3, LATENT))
    assert x.shape == (3, 3, 32, 32)
    assert x.abs().max() <= 1.0 and x.abs().max() > 0.999
    assert D(x).shape == (3, 1)


@pytest.mark.parametrize("make", [
    lambda: (DCGANGenerator(LATENT, image_size=28, channels=1, width=4), DCGANCritic(image_size=28, channels=1, width=4)),
    lambda: (ResNetGenerator(LATENT, channels=1, width=4), ResNetCritic(channels=1, width=4)),
])
def test_leading_batch_shapes(make):
    """[*batch, P] -> [*batch, C, S, S] -> [*batch, 1], the same numbers as on the flat batch."""
    G, D = make()
    G.eval(), D.eval()
    z = torch.randn(2, 3, LATENT)
    x = G(z)
    assert x.shape == (2, 3, 1, G.image_size, G.image_size)
    assert torch.allclose(x.reshape(6, *x.shape[2:]), G(z.reshape(6, LATENT)), rtol=0, atol=1e-12)
    assert D(x).shape == (2, 3, 1)
    assert torch.allclose(D(x).reshape(6, 1), D(x.reshape(6, *x.shape[2:])), rtol=0, atol=1e-12)


# -- the paper's architecture ----------------------------------------------------------------------
def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size, stages", [(64, [512, 256, 128, 64]), (128, [1024, 512, 256, 128, 64])])
def test_paper_parameter_counts(size, stages):
    """ngf = ndf = 64, latent 100, RGB, no conv biases, BatchNorm (scale and shift) in both."""
    G = DCGANGenerator(100, image_size=size, channels=3, width=64)
    D = DCGANCritic(image_size=size, channels=3, width=64, batchnorm=True)
    convs = [100 * stages[0]] + [a * b for a, b in zip(stages, stages[1:])] + [stages[-1] * 3]
    assert _count(G) == 16 * sum(convs) + 2 * sum(stages)
    critic_stages = stages[::-1]
    convs = [3 * critic_stages[0]] + [a * b for a, b in zip(critic_stages, critic_stages[1:])] + [critic_stages[-1]]
    assert _count(D) == 16 * sum(convs) + 2 * sum(critic_stages[1:])
    assert all(m.bias is None for m in D.modules() if isinstance(m, torch.nn.Conv2d))


def test_critic_without_batchnorm_has_biases():
    D = DCGANCritic(image_size=32, channels=1, width=4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert all(m.bias is not None for m in D.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("size, where", [(28, [7, 14]), (32, [8, 16]), (64, [8, 16]), (128, [8, 16, 32])])
def test_dropout_placement(size, where):
    """Dropout2d sits after the generator's blocks at 8 and 16 px (and 32 px at 128 px), and after
    the critic's blocks at the same resolutions (the paper's placement)."""
    seen = {"G": [], "D": []}

    def record(key):
        return lambda module, inputs, output: seen[key].append(inputs[0].shape[-1])

    G = DCGANGenerator(LATENT, image_size=size, channels=1, width=2, dropout=0.5)
    D = DCGANCritic(image_size=size, channels=1, width=2, dropout=0.5)
    for key, net in (("G", G), ("D", D)):
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout2d):
                m.register_forward_hook(record(key))
    D(G(torch.randn(2, LATENT)))
    assert seen == {"G": where, "D": where[::-1]}
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in DCGANGenerator(LATENT, image_size=size).modules())


@pytest.mark.parametrize("make", [
    lambda: DCGANGenerator(LATENT, image_size=32, channels=1, width=4, dropout=0.5),
    lambda: ResNetGenerator(LATENT, channels=1, width=4, dropout=0.5),
])
def test_mc_dropout_draws_fresh_masks(make):
    G = make()
    z = torch.randn(2, LATENT)
    G.eval()
    assert torch.equal(G(z), G(z))
    with mc_dropout(G):
        assert not torch.equal(G(z), G(z))
    assert not G.training


def test_spectral_norm_bounds_every_layer():
    """After enough power iterations every parametrized weight has largest singular value 1."""
    D = ResNetCritic(channels=3, width=4)
    weights = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert len(weights) == 11  # 4 blocks x 2 convs, 2 shortcuts, the linear layer
    x = torch.randn(2, 3, 32, 32)
    for _ in range(200):
        D(x)
    D.eval()
    for m in weights:
        sigma = torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-6)
    assert not any(hasattr(m, "parametrizations") for m in ResNetCritic(width=4, spectral_norm=False).modules())


# -- Pyro plates -----------------------------------------------------------------------------------
def test_image_site_event_dim_and_nested_plates():
    G = DCGANGenerator(LATENT, image_size=32, channels=3, width=4)
    model = image_model(G)
    trace = pyro.poutine.trace(model).get_trace(torch.zeros(5, 3, 32, 32))
    site = trace.nodes["x"]
    assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (3, 32, 32)
    trace.compute_log_prob()
    assert site["log_prob"].shape == (5,)

    G.eval()
    draws = Predictive(model, num_samples=4, parallel=True, return_sites=["x"])(num_samples=5)["x"]
    assert draws.shape == (4, 5, 3, 32, 32)
    assert DCGANCritic(image_size=32, channels=3, width=4)(draws).shape == (4, 5, 1)


# -- image observation sites through SVI, every loss -------------------------------------------------
def _dcgan_pair(channels=1, dropout=0.0, **critic):
    """Dropout in the generator only: a critic with dropout draws a fresh mask for the generator's
    term, so ``loss.loss`` (which reuses the critic's term) would not equal ``svi.step``."""
    return (DCGANGenerator(LATENT, image_size=32, channels=channels, width=4, dropout=dropout),
            DCGANCritic(image_size=32, channels=channels, width=4, **critic))


LOSSES = {
    "fgan-gan": lambda D: FGANLoss("gan", D),
    "fgan-kl": lambda D: FGANLoss("kl", D),
    "fgan-reverse_kl": lambda D: FGANLoss("reverse_kl", D, critic_steps=2),
    "fgan-pearson": lambda D: FGANLoss("pearson", D),
    "wgan-gp": lambda D: WassersteinLoss(D, penalty=GradientPenalty(10.0), critic_steps=2),
    "relativistic": lambda D: RelativisticLoss(D),
    "mmd": lambda D: MMDLoss(),
    "mmd-critic": lambda D: MMDLoss(critic=D),
    "sam-fgan": lambda D: SAM(FGANLoss("js", D), rho=0.05),
    "sam-wgan-gp": lambda D: SAM(WassersteinLoss(D, penalty=GradientPenalty(10.0), critic_steps=2), rho=0.05, adaptive=True),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_image_sites_through_svi(name):
    G, D = _dcgan_pair(dropout=0.1) if "fgan" in name else _dcgan_pair()
    loss = LOSSES[name](D)
    critic = None if name == "mmd" else D
    model = image_model(G)
    svi = SVI(model, prior_guide, Adam({"lr": 1e-3, "betas": (0.5, 0.999)}), loss)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    check_valid_steps(svi, loss, model, prior_guide, G, critic, x, getattr(loss, "critic_steps", 1)
                      if not isinstance(loss, SAM) else loss.base.critic_steps)


def test_batchnorm_critic_through_svi():
    G, D = _dcgan_pair(channels=3, dropout=0.1, batchnorm=True)
    loss = FGANLoss("js", D)
    model = image_model(G)
    svi = SVI(model, prior_guide, Adam({"lr": 1e-3}), loss)
    check_valid_steps(svi, loss, model, prior_guide, G, D, torch.rand(3, 3, 32, 32) * 2 - 1, 1)


def test_resnet_pair_through_svi():
    """Spectral normalization's power iteration updates its vectors on every training-mode forward,
    so ``loss.loss`` and ``svi.step`` differ by that; here: finite steps that move both players
    and the power-iteration vectors."""
    G, D = ResNetGenerator(LATENT, channels=3, width=4), ResNetCritic(channels=3, width=4)
    loss = WassersteinLoss(D, penalty=GradientPenalty(10.0), critic_steps=1)
    svi = SVI(image_model(G), prior_guide, Adam({"lr": 1e-3}), loss)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    u = [b.clone() for name, b in D.named_buffers() if name.endswith("_u")]
    assert len(u) == 11
    for _ in range(2):
        g_before, d_before = snapshot(G), snapshot(D)
        result = svi.step(x)
        assert all(torch.isfinite(torch.tensor(result)))
        assert not unchanged(g_before, G) and not unchanged(d_before, D)
    after = [b for n, b in D.named_buffers() if n.endswith("_u")]
    assert all(not torch.equal(a, b) for a, b in zip(u, after) if a.numel() > 1)  # the linear layer's u is [1]


# -- ValueError branches -----------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: DCGANGenerator(LATENT, image_size=48), "Expected image_size in (28, 32, 64, 128), actual 48"),
    (lambda: DCGANCritic(image_size="64"), "Expected image_size in (28, 32, 64, 128), actual '64'"),
    (lambda: DCGANGenerator(0), "Expected latent_dim to be an int >= 1, actual 0"),
    (lambda: DCGANGenerator(LATENT, channels=True), "Expected channels to be an int >= 1, actual True"),
    (lambda: DCGANCritic(width=2.0), "Expected width to be an int >= 1, actual 2.0"),
    (lambda: DCGANGenerator(LATENT, dropout=1.0), "Expected dropout in [0, 1), actual 1.0"),
    (lambda: DCGANCritic(dropout=-0.1), "Expected dropout in [0, 1), actual -0.1"),
    (lambda: ResNetGenerator(LATENT, width=0), "Expected width to be an int >= 1, actual 0"),
    (lambda: ResNetGenerator(LATENT, dropout="0.1"), "Expected dropout in [0, 1), actual '0.1'"),
    (lambda: ResNetCritic(channels=0), "Expected channels to be an int >= 1, actual 0"),
    (lambda: ResNetCritic(dropout=2), "Expected dropout in [0, 1), actual 2"),
])
def test_constructor_errors(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value) == message


@pytest.mark.parametrize("net, x, message", [
    (lambda: DCGANGenerator(LATENT, image_size=32, width=2), torch.zeros(2, 5),
     "Expected latents of shape [*batch, 8], actual [2, 5]"),
    (lambda: ResNetGenerator(LATENT, width=2), torch.zeros(LATENT),
     "Expected latents of shape [*batch, 8], actual [8]"),
    (lambda: DCGANCritic(image_size=32, channels=3, width=2), torch.zeros(2, 1, 32, 32),
     "Expected images of shape [*batch, 3, 32, 32], actual [2, 1, 32, 32]"),
    (lambda: ResNetCritic(channels=1, width=2), torch.zeros(2, 1, 28, 28),
     "Expected images of shape [*batch, 1, 32, 32], actual [2, 1, 28, 28]"),
])
def test_input_shape_errors(net, x, message):
    with pytest.raises(ValueError) as error:
        net()(x)
    assert str(error.value) == message
