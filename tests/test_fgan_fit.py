"""Every f-divergence fits a 1-D Gaussian through plain :class:`pyro.infer.SVI`.

The generator is ``x = mu + s z``, ``z ~ N(0, 1)``, started at ``mu = 0, s = 1``; the data are
fresh draws from ``N(3, 0.5^2)`` at every step. Each row must recover ``mu`` within 0.05 and
``s`` within 10% (the parameters' final values, no averaging). The settings below are the
measured ones from ``benchmarks/fit_gaussian_1d.py``; ``docs/divergences.md`` has the table over
ten seeds, the failures behind each remedy and the timings.
"""

import pytest
import torch
import pyro
import pyro.distributions as dist
from pyro.distributions import constraints
from pyro.infer import SVI
from pyro.optim import ClippedAdam

from bayesgan import divergences
from bayesgan.penalties import OutputPenalty
from bayesgan.infer import FGANLoss

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

LOC, SCALE = 3.0, 0.5
BATCH, WIDTH = 256, 64


# id: (divergence name, its kwargs, overrides of {steps: 1000, lr: 1e-2, penalty: None}).
# Common to every row: ClippedAdam (clip_norm 10, Pyro's default), betas (0.5, 0.999), the same
# lr for both players, batch 256, the divergence's default generator objective, and a LeakyReLU
# critic 1-64-64-1 (at width 32, 2 of 10 alpha=0.5 seeds stalled at a small s). The seed is 0
# everywhere; docs/divergences.md gives seeds 0-9 (110/110 pass) and the failures behind each row.
SETTINGS = {
    # tanh saturates: unpenalized, the critic ends at V >> 0 everywhere (T_real = T_fake = 1/2),
    # both players' gradients vanish and the fit stalls near mu 3.9, s 0.7 (0/5). The output
    # penalty keeps V in tanh's live range; lr 5e-3 because at 1e-2 the final mu is off by up to
    # 0.07. The two generator objectives coincide (f*(t) = t).
    "total_variation": ("total_variation", {}, {"lr": 5e-3, "penalty": OutputPenalty(0.1)}),
    # Fine with either objective (saturating 5/5 too).
    "kl": ("kl", {}, {}),
    # Saturating (nonsaturating 5/5 too). Relies on the softplus activation: with the f-GAN
    # table's -exp(-v), saturating 1/5 (s stuck at 0.31-0.70), nonsaturating non-finite by step 19.
    "reverse_kl": ("reverse_kl", {}, {}),
    # Fine with either objective.
    "pearson": ("pearson", {}, {}),
    # chi^2(P||Q) is infinite at the start (s = 1 > sqrt(2) * 0.5). Unpenalized the critic runs
    # off and the fit stalls at mu 2.05, s 0.19 (0/5); with the table's 1 - exp(-v) it overflows
    # by step ~20 even with the penalty. Softplus activation + output penalty; saturating.
    "neyman": ("neyman", {}, {"penalty": OutputPenalty(0.1)}),
    # Saturating: the nonsaturating objective under-disperses (s 0.26-0.36, 0/5).
    "squared_hellinger": ("squared_hellinger", {}, {}),
    # Fine with either objective; js and gan receive identical gradients.
    "js": ("js", {}, {}),
    "gan": ("gan", {}, {}),
    "weighted_js": ("weighted_js", {"pi": 0.5}, {}),
    # Fine with either objective.
    "alpha_0.5": ("alpha", {"alpha": 0.5}, {}),
    # Nonsaturating: the saturating objective over-disperses (s 0.63-0.69, 0/5).
    "alpha_2": ("alpha", {"alpha": 2.0}, {}),
}


def model(x):
    mu = pyro.param("mu", torch.zeros(1))
    s = pyro.param("s", torch.ones(1), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        pyro.sample("x", dist.Delta(mu + s * z, event_dim=1), obs=x)


def guide(x):
    pass


def critic_mlp(width):
    return torch.nn.Sequential(
        torch.nn.Linear(1, width), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(width, width), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(width, 1),
    )


def fit(divergence, *, steps=1000, lr=1e-2, penalty=None, seed=0):
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(10_000 + seed)
    loss = FGANLoss(divergence, critic_mlp(WIDTH), penalty=penalty)
    optim = ClippedAdam({"lr": lr, "betas": (0.5, 0.999), "clip_norm": 10.0})
    svi = SVI(model, guide, optim, loss=loss)
    for _ in range(steps):
        svi.step(LOC + SCALE * torch.randn(BATCH, 1, generator=data))
    return pyro.param("mu").item(), pyro.param("s").item()


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_fits_gaussian(case):
    name, kwargs, overrides = SETTINGS[case]
    mu, s = fit(divergences.get(name, **kwargs), **overrides)
    assert abs(mu - LOC) < 0.05, (case, mu, s)
    assert abs(s - SCALE) / SCALE < 0.10, (case, mu, s)


def test_settings_cover_every_divergence():
    assert {name for name, _, _ in SETTINGS.values()} == {
        type(divergences.get(n)).name for n in divergences.names()
    }
