"""Joint critics for bidirectional GANs: one score for each pair ``(x, z)``.

>>> import torch
>>> critic = JointCritic.mlp(2, 3, width=16)
>>> critic(torch.zeros(5, 2), torch.zeros(5, 3)).shape
torch.Size([5, 1])
"""

import torch

from .mlp import _activation, _check_int, mlp

__all__ = ["JointCritic"]


class JointCritic(torch.nn.Module):
    r"""A critic of pairs: features of :math:`x` and of :math:`z`, concatenated, then a head.

    .. math::

        V(x, z) = h\big([\,\phi_x(x),\ \phi_z(z)\,]\big),

    with :math:`\phi_x(x)` flattened per sample. Build one with :meth:`mlp` (vectors) or
    :meth:`conv` (images ``[N, C, H, W]``), or from any three modules. There is no batch
    normalization, so batches of one work and gradient penalties are per sample.

    :param torch.nn.Module x_net: :math:`\phi_x`, features of the observations.
    :param torch.nn.Module z_net: :math:`\phi_z`, features of the latents.
    :param torch.nn.Module head: :math:`h`, from the joined features to one number.

    >>> import torch
    >>> critic = JointCritic(torch.nn.Linear(4, 8), torch.nn.Linear(2, 8), torch.nn.Linear(16, 1))
    >>> critic(torch.zeros(3, 4), torch.zeros(3, 2)).shape
    torch.Size([3, 1])
    """

    def __init__(self, x_net, z_net, head):
        super().__init__()
        for name, net in (("x_net", x_net), ("z_net", z_net), ("head", head)):
            if not isinstance(net, torch.nn.Module):
                raise ValueError(f"Expected {name} to be a torch.nn.Module, actual {type(net).__name__}")
        self.x_net, self.z_net, self.head = x_net, z_net, head

    def forward(self, x, z):
        hx = self.x_net(x).flatten(1)
        hz = self.z_net(z).flatten(1)
        return self.head(torch.cat([hx, hz], dim=-1))

    @classmethod
    def mlp(cls, x_dim, z_dim, *, width=128, depth=1, activation="leaky_relu"):
        r"""A joint critic of vectors: an MLP on each input (``depth`` hidden layers of
        ``width`` units, then ``width`` features each) and an MLP head with one hidden layer.

        :param int x_dim: the size of :math:`x`.
        :param int z_dim: the size of :math:`z`.
        :param int width: units per layer.
        :param int depth: hidden layers of each input branch, at least 0.
        :param activation: a name from :data:`bayesgan.nn.ACTIVATIONS` or a module factory.
        :rtype: JointCritic
        """
        make = _activation(activation)
        x_net = torch.nn.Sequential(mlp(x_dim, width, width, depth, activation), make())
        z_net = torch.nn.Sequential(mlp(z_dim, width, width, depth, activation), make())
        return cls(x_net, z_net, mlp(2 * width, 1, width, 1, activation))

    @classmethod
    def conv(cls, image_shape, z_dim, *, channels=32, width=128, activation="leaky_relu"):
        r"""A joint critic of images: a trunk of two stride-2 3x3 convolutions on
        :math:`x` (``channels`` then ``2 * channels``), an MLP on :math:`z` (one hidden layer
        of ``width``), and an MLP head with one hidden layer of ``width`` units.

        :param tuple image_shape: ``(C, H, W)`` of one image.
        :param int z_dim: the size of :math:`z`.
        :param int channels: channels of the first convolution.
        :param int width: units of the latent branch and of the head.
        :param activation: a name from :data:`bayesgan.nn.ACTIVATIONS` or a module factory.
        :rtype: JointCritic

        >>> critic = JointCritic.conv((1, 8, 8), 4, channels=8, width=16)
        >>> critic(torch.zeros(2, 1, 8, 8), torch.zeros(2, 4)).shape
        torch.Size([2, 1])
        """
        shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else None
        if shape is None or len(shape) != 3:
            raise ValueError(f"Expected image_shape as (C, H, W), actual {image_shape!r}")
        for name, value in (("C", shape[0]), ("H", shape[1]), ("W", shape[2]), ("channels", channels)):
            _check_int(name, value, minimum=1)
        make = _activation(activation)
        trunk = torch.nn.Sequential(
            torch.nn.Conv2d(shape[0], channels, 3, stride=2, padding=1), make(),
            torch.nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), make(),
            torch.nn.Flatten(),
        )
        features = 2 * channels * (((shape[1] + 1) // 2 + 1) // 2) * (((shape[2] + 1) // 2 + 1) // 2)
        z_net = torch.nn.Sequential(mlp(z_dim, width, width, 1, activation), make())
        return cls(trunk, z_net, mlp(features + width, 1, width, 1, activation))
