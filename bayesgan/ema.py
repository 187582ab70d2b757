r"""Exponential moving average of a network's weights (Yazıcı et al., 2019).

.. math::

    \bar\psi_t = \beta\,\bar\psi_{t-1} + (1 - \beta)\,\psi_t \quad (t \ge t_0), \qquad
    \bar\psi_t = \psi_t \quad (t < t_0).

Before the start step the average tracks the weights; from it on it averages. Buffers
(BatchNorm statistics) are copied, not averaged. The paper uses :math:`\beta = 0.999` from epoch
20 and evaluates with the averaged generator.

>>> import torch
>>> net = torch.nn.Linear(1, 1)
>>> ema = EMA(net, decay=0.5)
>>> with torch.no_grad():
...     _ = net.weight.add_(1.0)
>>> ema.update()
>>> with ema.average_parameters():
...     pass   # sample or evaluate with the averaged weights here
"""

import contextlib

import torch

__all__ = ["EMA"]


class EMA:
    """An exponential moving average of a module's floating-point parameters.

    :param torch.nn.Module module: the network to average (usually the generator).
    :param float decay: :math:`\\beta` in [0, 1).
    :param int start: the first step that averages; before it the average copies the weights.
    """

    def __init__(self, module, *, decay=0.999, start=0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"Expected 0 <= decay < 1, actual {decay!r}")
        if not (isinstance(start, int) and start >= 0):
            raise ValueError(f"Expected start to be an int >= 0, actual {start!r}")
        self.module, self.decay, self.start = module, decay, start
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self):
        """Fold the module's current weights into the average; call it after each optimizer step."""
        averaging = self.num_updates >= self.start
        # every name of a shared (tied) parameter: state_dict lists each, and all must average
        params = {name for name, _ in self.module.named_parameters(remove_duplicate=False)}
        for name, value in self.module.state_dict().items():
            shadow = self.shadow[name]
            if averaging and name in params and value.is_floating_point():
                shadow.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                shadow.copy_(value)
        self.num_updates += 1

    def copy_to(self, module=None):
        """Load the averaged weights into ``module`` (default: the averaged module itself)."""
        (module or self.module).load_state_dict(self.shadow)

    @contextlib.contextmanager
    def average_parameters(self):
        """Use the averaged weights inside the block, then put the trained ones back."""
        saved = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.copy_to()
        try:
            yield self.module
        finally:
            self.module.load_state_dict(saved)

    def state_dict(self):
        """Everything needed to resume: the averages, the step count and the settings."""
        return {"shadow": self.shadow, "num_updates": self.num_updates, "decay": self.decay, "start": self.start}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output."""
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self.num_updates, self.decay, self.start = state["num_updates"], state["decay"], state["start"]

    def __repr__(self):
        return f"EMA(decay={self.decay}, start={self.start}, num_updates={self.num_updates})"
