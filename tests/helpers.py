"""Small models and checks shared by the loss tests."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch


def snapshot(module):
    """Copies of a module's parameters."""
    return [p.detach().clone() for p in module.parameters()]


def unchanged(before, module):
    """Whether a module's parameters are bit-identical to a :func:`snapshot`."""
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def scale_location_model(x):
    """x = mu + s z, starting at mu = 0, s = 1 (fgan.md 5)."""
    mu = pyro.param("mu", lambda: torch.zeros(1))
    s = pyro.param("s", lambda: torch.ones(1))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        pyro.sample("x", dist.Delta(mu + s * z, event_dim=1), obs=x)


def check_valid_steps(svi, loss, model, guide, generator, critic, x, critic_steps):
    """Over two generator periods: ``svi.step`` returns a 2-tuple of finite floats equal to
    ``loss.loss`` under the same seed; the generator is bit-identical on critic-only steps (Adam
    would move it on an explicit zero gradient) and the critic (if any) moves every step.
    Returns the step results."""
    results = []
    for step in range(2 * critic_steps):
        pyro.set_rng_seed(100 + step)
        expected = loss.loss(model, guide, x)
        g_before = snapshot(generator)
        c_before = snapshot(critic) if critic is not None else None
        pyro.set_rng_seed(100 + step)
        result = svi.step(x)
        assert type(result) is tuple and len(result) == 2
        assert all(type(v) is float and math.isfinite(v) for v in result)
        assert result == pytest.approx(expected, rel=1e-12, abs=1e-14)
        generator_step = step % critic_steps == critic_steps - 1
        assert loss.last["generator_updated"] is generator_step
        assert unchanged(g_before, generator) is not generator_step, step
        if critic is not None:
            assert not unchanged(c_before, critic), step
        results.append(result)
    return results
