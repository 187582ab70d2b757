r"""Diagnostics of a trained generator: the flatness of its loss (sharpness), likelihood
estimates under the relaxed model, and ArviZ objects for model comparison.

* :mod:`~bayesgan.diagnostics.sharpness`: the top Hessian eigenvalues and trace of the
  generator's loss by Hessian-vector products (the paper's flatness measure);
* :mod:`~bayesgan.diagnostics.likelihood`: the relaxed log-likelihood of held-out data, per
  point and per posterior draw;
* :mod:`~bayesgan.diagnostics.inference_data`: ArviZ objects (LOO, WAIC, model comparison).
"""

from .inference_data import to_inference_data
from .likelihood import log_likelihood_draws, relaxed_log_likelihood
from .sharpness import generator_sharpness, hessian_eigenvalues, hessian_trace, sharpness

__all__ = [
    "generator_sharpness",
    "hessian_eigenvalues",
    "hessian_trace",
    "log_likelihood_draws",
    "relaxed_log_likelihood",
    "sharpness",
    "to_inference_data",
]
