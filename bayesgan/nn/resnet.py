r"""The ResNet generator and critic of SNGAN (Miyato et al., 2018) at 32 pixels (CIFAR-10).

Generator: a linear layer to a :math:`4 \times 4` map, three up-sampling residual blocks
(BatchNorm, ReLU, nearest-neighbour up-sampling, :math:`3 \times 3` convolutions; a
:math:`1 \times 1` convolution on the shortcut), BatchNorm, ReLU, a :math:`3 \times 3`
convolution and Tanh. Critic: four residual blocks (the first two halve the resolution by
average pooling; the first puts its pooling before its shortcut convolution), ReLU, a sum over
the pixels and a linear layer, every weight under spectral normalization
(:func:`torch.nn.utils.parametrizations.spectral_norm`), which bounds each layer's Lipschitz
constant by one.

Like :mod:`bayesgan.nn.dcgan`, both take any leading batch shape; ``dropout > 0`` adds
:class:`torch.nn.Dropout2d` after the generator's 8 and 16 px blocks and after the critic's
first two blocks.

>>> import torch
>>> G, D = ResNetGenerator(16, width=8), ResNetCritic(width=8)
>>> x = G(torch.randn(2, 16))
>>> x.shape, D(x).shape
(torch.Size([2, 3, 32, 32]), torch.Size([2, 1]))

References

1. T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida, *Spectral Normalization for Generative
   Adversarial Networks*, ICLR 2018.
"""

import math

import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .dcgan import _check, _check_dropout, _flat

__all__ = ["ResNetCritic", "ResNetGenerator"]

_SIZE = 32


def _conv(c_in, c_out, kernel, gain, sn):
    conv = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return _spectral_norm(conv) if sn else conv


class _UpBlock(nn.Module):
    """BN, ReLU, up-sample, conv3x3, BN, ReLU, conv3x3; shortcut: up-sample, conv1x1."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = _conv(c_in, c_out, 3, math.sqrt(2), False)
        self.conv2 = _conv(c_out, c_out, 3, math.sqrt(2), False)
        self.shortcut = _conv(c_in, c_out, 1, 1.0, False)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class _DownBlock(nn.Module):
    """(ReLU,) conv3x3, ReLU, conv3x3 (, average pool); a conv1x1 shortcut when the shape changes."""

    def __init__(self, c_in, c_out, *, down, first, sn):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _conv(c_in, c_out, 3, math.sqrt(2), sn)
        self.conv2 = _conv(c_out, c_out, 3, math.sqrt(2), sn)
        self.shortcut = _conv(c_in, c_out, 1, 1.0, sn) if (down or c_in != c_out) else None

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        s = x
        if self.first:  # the pooling first: the 1x1 convolution then runs on a quarter of the pixels
            s = self.shortcut(F.avg_pool2d(s, 2))
        elif self.shortcut is not None:
            s = self.shortcut(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        return (F.avg_pool2d(h, 2) if self.down else h) + s


class ResNetGenerator(nn.Module):
    r"""SNGAN's ResNet generator :math:`G_\psi : \mathbb{R}^P \to [-1, 1]^{C \times 32 \times 32}`.

    :param int latent_dim: :math:`P` (128 in SNGAN).
    :param int channels: :math:`C`.
    :param int width: the channels of every residual block (256 in SNGAN's CIFAR-10 net).
    :param float dropout: the :class:`~torch.nn.Dropout2d` rate; 0 adds no dropout layers.

    >>> import torch
    >>> G = ResNetGenerator(4, channels=1, width=4)
    >>> x = G(torch.randn(3, 4))
    >>> x.shape, bool(x.abs().max() <= 1)
    (torch.Size([3, 1, 32, 32]), True)
    """

    def __init__(self, latent_dim, channels=3, width=128, *, dropout=0.0):
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("channels", channels), ("width", width)):
            _check(name, value, 1)
        _check_dropout(dropout)
        self.latent_dim, self.channels, self.width = latent_dim, channels, width
        self.image_size = _SIZE
        self.linear = nn.Linear(latent_dim, 16 * width)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        layers = []
        for r in (8, 16, 32):
            layers.append(_UpBlock(width, width))
            if dropout > 0 and r in (8, 16):
                layers.append(nn.Dropout2d(dropout))
        layers += [nn.BatchNorm2d(width), nn.ReLU(), _conv(width, channels, 3, 1.0, False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        z, batch = _flat(z, (self.latent_dim,), "latents")
        x = self.main(self.linear(z).reshape(-1, self.width, 4, 4))
        return x.reshape(*batch, *x.shape[1:])


class ResNetCritic(nn.Module):
    r"""SNGAN's ResNet critic :math:`D : \mathbb{R}^{C \times 32 \times 32} \to \mathbb{R}`.

    .. math::

        D(x) = w^\top \sum_{i, j} \mathrm{ReLU}(h(x))_{:, i, j} + b, \qquad
        h = \text{4 residual blocks: } 32 \to 16 \to 8 \to 8 \to 8 \text{ px}.

    :param int channels: :math:`C`.
    :param int width: the channels of every residual block (128 in SNGAN).
    :param bool spectral_norm: spectral normalization of every convolution and of the
        linear layer.
    :param float dropout: the :class:`~torch.nn.Dropout2d` rate; 0 adds no dropout layers.

    >>> import torch
    >>> D = ResNetCritic(channels=1, width=4, spectral_norm=False)
    >>> D(torch.zeros(2, 5, 1, 32, 32)).shape
    torch.Size([2, 5, 1])
    """

    def __init__(self, channels=3, width=128, spectral_norm=True, *, dropout=0.0):
        super().__init__()
        for name, value in (("channels", channels), ("width", width)):
            _check(name, value, 1)
        _check_dropout(dropout)
        self.channels, self.image_size = channels, _SIZE
        sn = bool(spectral_norm)
        layers = [_DownBlock(channels, width, down=True, first=True, sn=sn)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers.append(_DownBlock(width, width, down=True, first=False, sn=sn))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += [_DownBlock(width, width, down=False, first=False, sn=sn) for _ in range(2)]
        self.main = nn.Sequential(*layers, nn.ReLU())
        linear = nn.Linear(width, 1)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        self.linear = _spectral_norm(linear) if sn else linear

    def forward(self, x):
        x, batch = _flat(x, (self.channels, _SIZE, _SIZE), "images")
        return self.linear(self.main(x).sum(dim=(2, 3))).reshape(*batch, 1)
