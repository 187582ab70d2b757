"""The JAX / NumPyro side of bayesgan (``pip install bayesgan[jax]``): the torch side's
divergences, objectives, penalties and regularizers as pure ``init``/``step`` pairs with optax
optimizers, for a generator written as a NumPyro model. Not imported by :mod:`bayesgan`.

Names are loaded on first use, so that ``import bayesgan.jax`` (and pytest's collection of
this package) does not need JAX; using any of them does.
"""

import importlib

_WHERE = {
    "AdversarialObjective": "gan",
    "BiGAN": "bigan",
    "EMA": "optim",
    "EMAState": "optim",
    "FGAN": "fgan",
    "GANInfo": "gan",
    "GANState": "gan",
    "MMD": "mmd",
    "Relativistic": "relativistic",
    "Wasserstein": "wgan",
    "diagnostics": None,
    "divergences": None,
    "handlers": None,
    "optim": None,
    "penalties": None,
    "relax": "handlers",
    "sam": "optim",
    "to_inference_data": "diagnostics",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_WHERE[name] or name}")
    value = module if _WHERE[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
