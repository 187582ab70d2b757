r"""DCGAN generators and critics (Radford et al., 2016) at 28, 32, 64 and 128 pixels.

The 64- and 128-pixel networks are the paper's: transposed convolutions with kernel 4 and
stride 2, no convolution biases, BatchNorm and ReLU in the generator, LeakyReLU(0.2) in the
critic, a Tanh output, :math:`\mathcal{N}(0, 0.02)` initialisation. A hidden block at
resolution :math:`r` has :math:`\text{width} \cdot S / (2 r)` channels for an image of side
:math:`S` (64 px: 512, 256, 128, 64 channels at 4, 8, 16, 32 px with ``width=64``; 128 px
adds a 1024-channel stage). At 28 px (MNIST) the stack is 7 -> 14 -> 28.

MC dropout: ``dropout > 0`` puts a :class:`torch.nn.Dropout2d` (whole channels) after the
generator's blocks at 8 and 16 px (and 32 px at 128 px; 7 and 14 px at 28 px) and after the
critic's blocks at the same resolutions, where the paper has them;
:func:`bayesgan.handlers.mc_dropout` keeps them stochastic while sampling.

Both networks take any leading batch shape, so they sit inside nested Pyro plates: the
generator maps ``[*batch, latent_dim]`` to ``[*batch, C, S, S]`` (an observation site
``Delta(G(z), event_dim=3)``), the critic maps ``[*batch, C, S, S]`` to ``[*batch, 1]``.

>>> import torch
>>> G = DCGANGenerator(8, image_size=32, channels=1, width=4)
>>> D = DCGANCritic(image_size=32, channels=1, width=4)
>>> x = G(torch.randn(5, 8))
>>> x.shape, D(x).shape
(torch.Size([5, 1, 32, 32]), torch.Size([5, 1]))
"""

from torch import nn

__all__ = ["DCGANCritic", "DCGANGenerator", "IMAGE_SIZES", "dcgan_init"]

#: The supported image sides, in pixels.
IMAGE_SIZES = (28, 32, 64, 128)


def dcgan_init(module):
    r"""DCGAN's initialisation, applied in place to every submodule (``net.apply(dcgan_init)``):
    convolution weights :math:`\sim \mathcal{N}(0, 0.02)`, BatchNorm scales
    :math:`\sim \mathcal{N}(1, 0.02)`, biases 0.

    :param torch.nn.Module module: a submodule; others than convolutions, linear layers and
        BatchNorm are left alone.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _plan(image_size, width):
    """``(seed, [(resolution, channels), ...], dropout resolutions)`` of the hidden blocks."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"Expected image_size in {IMAGE_SIZES}, actual {image_size!r}")
    seed = 7 if image_size == 28 else 4
    sizes = [seed]
    while 2 * sizes[-1] < image_size:
        sizes.append(2 * sizes[-1])
    blocks = [(r, width * image_size // (2 * r)) for r in sizes]
    dropout_at = {7, 14} if image_size == 28 else {8, 16, 32} if image_size == 128 else {8, 16}
    return seed, blocks, dropout_at


def _check(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Expected {name} to be an int >= {minimum}, actual {value!r}")


def _check_dropout(dropout):
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"Expected dropout in [0, 1), actual {dropout!r}")


def _flat(x, event_shape, what):
    """Reshape ``[*batch, *event_shape]`` to ``[n, *event_shape]``; return it and ``batch``."""
    k = len(event_shape)
    if x.dim() < k + 1 or tuple(x.shape[x.dim() - k:]) != tuple(event_shape):
        raise ValueError(
            f"Expected {what} of shape [*batch, {', '.join(map(str, event_shape))}], actual {list(x.shape)}"
        )
    batch = x.shape[: x.dim() - k]
    return x.reshape(-1, *event_shape), batch


class DCGANGenerator(nn.Module):
    r"""The DCGAN generator :math:`G_\psi : \mathbb{R}^P \to [-1, 1]^{C \times S \times S}`.

    .. math::

        z \xrightarrow{\text{ConvT}_{4 \times 4}} h_4 \xrightarrow{\text{ConvT}, \text{BN},
        \text{ReLU}} h_8 \to \dots \to h_{S/2} \xrightarrow{\text{ConvT}} \tanh(\cdot) \in
        [-1, 1]^{C \times S \times S}.

    :param int latent_dim: :math:`P`, the latent dimension (100 in the paper).
    :param int image_size: :math:`S`, one of :data:`IMAGE_SIZES`.
    :param int channels: :math:`C`, 1 (grey) or 3 (RGB).
    :param int width: ``ngf``, the channels of the last hidden block (64 in the paper).
    :param float dropout: the :class:`~torch.nn.Dropout2d` rate; 0 adds no dropout layers.

    >>> import torch
    >>> G = DCGANGenerator(100, image_size=64, channels=3, width=2)
    >>> x = G(torch.randn(2, 3, 100))   # any leading batch shape
    >>> x.shape, bool(x.abs().max() <= 1)
    (torch.Size([2, 3, 3, 64, 64]), True)
    """

    def __init__(self, latent_dim, *, image_size=64, channels=3, width=64, dropout=0.0):
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("channels", channels), ("width", width)):
            _check(name, value, 1)
        _check_dropout(dropout)
        seed, blocks, dropout_at = _plan(image_size, width)
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        layers, previous = [], latent_dim
        for i, (r, c) in enumerate(blocks):
            kernel, stride, padding = (seed, 1, 0) if i == 0 else (4, 2, 1)
            layers += [nn.ConvTranspose2d(previous, c, kernel, stride, padding, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU()]
            if dropout > 0 and r in dropout_at:
                layers.append(nn.Dropout2d(dropout))
            previous = c
        layers += [nn.ConvTranspose2d(previous, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z):
        z, batch = _flat(z, (self.latent_dim,), "latents")
        x = self.main(z[:, :, None, None])
        return x.reshape(*batch, *x.shape[1:])


class DCGANCritic(nn.Module):
    r"""The DCGAN critic (discriminator) :math:`D : \mathbb{R}^{C \times S \times S} \to
    \mathbb{R}`, the mirror image of :class:`DCGANGenerator`: strided convolutions halve the
    resolution down to the seed (4 px; 7 px at 28 px), and a last convolution returns one raw
    score per image (no sigmoid: the losses apply their own output activation).

    .. note:: BatchNorm (the paper's critic has it) makes each sample's score depend on the
        rest of the batch, which breaks per-sample gradient penalties (WGAN-GP, R1) and
        batches of one; it is off by default.

    :param int image_size: :math:`S`, one of :data:`IMAGE_SIZES`.
    :param int channels: :math:`C`.
    :param int width: ``ndf``, the channels of the first block (64 in the paper).
    :param bool batchnorm: BatchNorm after every convolution but the first and last, and no
        convolution biases: the paper's critic. Without it every convolution has a bias.
    :param float dropout: the :class:`~torch.nn.Dropout2d` rate; 0 adds no dropout layers.

    >>> import torch
    >>> D = DCGANCritic(image_size=28, channels=1, width=4, batchnorm=True)
    >>> D(torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 1])
    """

    def __init__(self, *, image_size=64, channels=3, width=64, batchnorm=False, dropout=0.0):
        super().__init__()
        for name, value in (("channels", channels), ("width", width)):
            _check(name, value, 1)
        _check_dropout(dropout)
        seed, blocks, dropout_at = _plan(image_size, width)
        self.image_size, self.channels = image_size, channels
        layers, previous = [], channels
        for i, (r, c) in enumerate(reversed(blocks)):
            layers.append(nn.Conv2d(previous, c, 4, 2, 1, bias=not batchnorm))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2))
            if dropout > 0 and r in dropout_at:
                layers.append(nn.Dropout2d(dropout))
            previous = c
        layers.append(nn.Conv2d(previous, 1, seed, 1, 0, bias=not batchnorm))
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x):
        side = self.image_size
        x, batch = _flat(x, (self.channels, side, side), "images")
        return self.main(x).reshape(*batch, 1)
