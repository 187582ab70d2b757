"""Skip collecting the JAX side's modules (and their doctests) when the ``jax`` extra is not
installed: importing them would fail collection."""

import importlib

collect_ignore_glob = []
for _name in ("jax", "numpyro", "optax", "flax"):
    try:
        importlib.import_module(_name)
    except ImportError:
        collect_ignore_glob = ["*.py"]
        break
