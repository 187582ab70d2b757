"""Networks for generators, critics and encoders.

Every network here is a plain :class:`torch.nn.Module`: use it inside a Pyro model through
:func:`pyro.module`, or make some of its weights random with
:func:`bayesgan.models.make_stochastic`.

>>> import torch
>>> net = mlp(2, 1, width=16, depth=2)
>>> net(torch.zeros(5, 2)).shape
torch.Size([5, 1])
"""

from .mlp import ACTIVATIONS, mlp
from .dcgan import IMAGE_SIZES, DCGANCritic, DCGANGenerator, dcgan_init
from .resnet import ResNetCritic, ResNetGenerator
from .joint import JointCritic
from .quadratic import QuadraticCritic

__all__ = ["ACTIVATIONS", "mlp"]
__all__ += ["JointCritic", "QuadraticCritic"]
__all__ += ["DCGANCritic", "DCGANGenerator", "IMAGE_SIZES", "ResNetCritic", "ResNetGenerator", "dcgan_init"]
