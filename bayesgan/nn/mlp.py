"""Multilayer perceptrons: the generators and critics of the toy targets.

>>> import torch
>>> net = mlp(2, 1, width=16, depth=2)
>>> net(torch.zeros(5, 2)).shape
torch.Size([5, 1])
"""

import torch

__all__ = ["ACTIVATIONS", "mlp"]

#: Hidden-layer activations by name, for :func:`mlp` and the command line.
ACTIVATIONS = {
    "elu": torch.nn.ELU,
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.2),
    "relu": torch.nn.ReLU,
    "silu": torch.nn.SiLU,
    "tanh": torch.nn.Tanh,
}


def mlp(in_dim, out_dim, width, depth, activation="relu"):
    r"""A fully connected network with ``depth`` hidden layers of ``width`` units and a linear
    output layer:

    .. math::

        x \mapsto W_{L+1}\, a(\dots a(W_1 x + b_1) \dots) + b_{L+1}, \qquad L = \text{depth}.

    ``depth = 0`` gives a single linear layer. The layers use PyTorch's default initialisation.

    :param int in_dim: the input size.
    :param int out_dim: the output size.
    :param int width: the number of units of each hidden layer.
    :param int depth: the number of hidden layers, at least 0.
    :param activation: a name from :data:`ACTIVATIONS` or a callable that returns a new
        :class:`torch.nn.Module` on each call (e.g. ``torch.nn.Tanh``).
    :rtype: torch.nn.Sequential

    >>> mlp(2, 3, width=8, depth=1, activation="tanh")
    Sequential(
      (0): Linear(in_features=2, out_features=8, bias=True)
      (1): Tanh()
      (2): Linear(in_features=8, out_features=3, bias=True)
    )
    """
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width)):
        _check_int(name, value, minimum=1)
    _check_int("depth", depth, minimum=0)
    make = _activation(activation)
    layers, size = [], in_dim
    for _ in range(depth):
        layers += [torch.nn.Linear(size, width), make()]
        size = width
    layers.append(torch.nn.Linear(size, out_dim))
    return torch.nn.Sequential(*layers)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Expected {name} to be an int >= {minimum}, actual {value!r}")


def _activation(activation):
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"Expected an activation in {sorted(ACTIVATIONS)}, actual {activation!r}")
        return ACTIVATIONS[activation]
    if not callable(activation):
        raise ValueError(f"Expected an activation name or a callable, actual {activation!r}")
    return activation
