"""How the command line names data, networks, objectives, penalties and regularizers: one small
builder each."""

import math
from pathlib import Path

import pyro
import torch

from . import datasets, images
from .handlers import relax
from .infer import SAM, FGANLoss, MMDLoss, RelativisticLoss, WassersteinLoss, WeightClipping
from .nn import DCGANCritic, DCGANGenerator, IMAGE_SIZES, ResNetCritic, ResNetGenerator, mlp
from .penalties import R1, R2, GeneratorGradientPenalty, GradientPenalty, OutputPenalty, WGANDiv

LOSSES = ("fgan", "wgan-gp", "wgan-gp-one-sided", "wgan-div", "wgan-clip", "relativistic", "mmd")

PENALTIES = {
    "r1": R1,
    "r2": R2,
    "gp": GradientPenalty,
    "gp-one-sided": lambda w: GradientPenalty(w, one_sided=True),
    "output": OutputPenalty,
}


def _image_preset(data, *, epoch):
    return {
        "data": data, "arch": "dcgan", "image_size": 64, "latent_dim": 100, "width": 64,
        "critic_batchnorm": True, "loss": "wgan-div", "critic_steps": 5, "batch_size": [128],
        "lr_generator": 1e-3, "lr_critic": 1e-3, "betas": (0.5, 0.999), "lr_decay": 0.0,
        "steps": 250 * epoch, "warmup": 10 * epoch, "ema": 0.999, "ema_start": 20 * epoch,
        "eval_samples": 10_000, "checkpoint_every": 1000, "sample_every": 1000, "metrics_every": 5 * epoch,
    }


#: Named flag sets; explicit flags override them.
PRESETS = {
    # The paper's toy (benchmarks.md §5.4): 200 points from N(0, I_2), MMD with the paper's
    # kernel, batch 50, lr 0.01, width 32, LeakyReLU; 1000 epochs of 4 steps.
    "paper-toy": {
        "data": "normal_2d", "num_data": 200, "loss": "mmd", "batch_size": [50], "steps": 4000,
        "lr_generator": 0.01, "lr_critic": 0.01, "lr_decay": 0.0, "width": 32, "depth": 1,
        "activation": "leaky_relu", "eval_samples": 10_000, "critic_steps": 1,
    },
    # The paper's reference image runs (paper.md, "Training and evaluation settings"): DCGAN
    # 64x64 (ngf = ndf = 64, BatchNorm in both), WGAN-div, 5 critic steps, batch 128, lr 1e-3,
    # Adam(0.5, 0.999), latent 100, 250 epochs; lr warm-up from 1% over 10 epochs; EMA 0.999 from
    # epoch 20. Steps count minibatches: MNIST has 60000 // 128 = 468 per epoch, CIFAR-10 390.
    "mnist-64": _image_preset("mnist", epoch=468),
    "cifar10-64": {**_image_preset("cifar10", epoch=390), "dropout": 0.1},
}


def parse_penalty(text):
    """``NAME=WEIGHT`` (e.g. ``r1=1.0``) into ``(name, weight)``; raises ValueError."""
    name, _, weight = text.partition("=")
    if name not in PENALTIES or not weight:
        raise ValueError(f"expected NAME=WEIGHT with NAME in {sorted(PENALTIES)}, actual {text!r}")
    return name, float(weight)


def make_loss(args, critic):
    """The loss the flags describe: an objective, its penalties, and SAM around it."""
    penalty = None
    for name, weight in args.penalty or ():
        term = PENALTIES[name](weight)
        penalty = term if penalty is None else penalty + term
    generator_penalty = None
    if args.generator_penalty:
        wrt = "samples" if args.loss == "mmd" else "parameters"
        generator_penalty = GeneratorGradientPenalty(args.generator_penalty, wrt=wrt)
    common = {"critic_steps": args.critic_steps, "generator_penalty": generator_penalty}
    if args.loss == "fgan":
        loss = FGANLoss(args.divergence, critic, generator_objective=args.generator_objective,
                        penalty=penalty, **common)
    elif args.loss == "mmd":
        loss = MMDLoss(generator_penalty=generator_penalty)
    elif args.loss == "relativistic":
        loss = RelativisticLoss(critic, penalty=penalty, **common)
    else:
        loss = WassersteinLoss(critic, **_wasserstein(args.loss, penalty), **common)
    if args.sam:
        loss = SAM(loss, rho=args.sam, adaptive=args.adaptive_sam)
    return loss


def _wasserstein(name, extra):
    base = {
        "wgan-gp": {"penalty": GradientPenalty(10.0)},
        "wgan-gp-one-sided": {"penalty": GradientPenalty(10.0, one_sided=True)},
        "wgan-div": {"penalty": WGANDiv()},
        "wgan-clip": {"penalty": None, "constraint": WeightClipping(0.01)},
    }[name]
    if extra is not None:
        base["penalty"] = extra if base["penalty"] is None else base["penalty"] + extra
    return base


def wrap_model(args, model):
    """Likelihood relaxation (or instance noise) around the training model, if asked for."""
    if not args.relax:
        return model
    return relax(model, scale=args.relax, where="both" if args.instance_noise else "fake")


# -- data and networks -------------------------------------------------------------------------
#: The image data sets ``--data`` takes by name (any other value with a path separator, or an
#: existing folder, is an image folder).
IMAGE_DATA = ("digits", "mnist", "fashion-mnist", "cifar10")
ARCHS = ("mlp", "dcgan", "resnet")
_NATIVE = {"digits": 8, "mnist": 28, "fashion-mnist": 28, "cifar10": 32}


def is_image(name):
    """Whether ``--data`` names image data (a data set or a folder) rather than a toy target."""
    return name not in datasets.names()


def resolve(args):
    """Fill in the flags whose defaults depend on the data: ``arch``, ``image_size``,
    ``latent_dim``, ``width``; in place, returning ``args``."""
    image = is_image(args.data)
    if args.arch is None:
        args.arch = "dcgan" if image else "mlp"
    if image and args.image_size is None:
        native = _NATIVE.get(args.data, 64)
        args.image_size = {"mlp": native, "resnet": 32}.get(args.arch, native if native in IMAGE_SIZES else 32)
    if args.latent_dim is None:
        args.latent_dim = 100 if image else 2
    if args.width is None:
        args.width = {"mlp": 128, "dcgan": 64, "resnet": 128}[args.arch]
    return args


def check(args):
    """Flag combinations argparse cannot check; raises ValueError."""
    if not is_image(args.data) and args.arch != "mlp":
        raise ValueError(f"Expected --arch mlp for the toy target {args.data!r}, actual {args.arch!r}")
    if args.arch == "dcgan" and args.image_size not in IMAGE_SIZES:
        raise ValueError(f"Expected --image-size in {IMAGE_SIZES} for --arch dcgan, actual {args.image_size}")
    if args.arch == "resnet" and args.image_size != 32:
        raise ValueError(f"Expected --image-size 32 for --arch resnet, actual {args.image_size}")


def make_data(args):
    """``(data, target)``: the training set (at most ``--num-data`` rows) and the toy target
    (``None`` for images), on the CPU."""
    if not is_image(args.data):
        return datasets.fixed_dataset(args.data, args.num_data, seed=args.seed), datasets.get(args.data)
    if args.data in IMAGE_DATA:
        data = images.load(args.data, size=args.image_size)
    else:
        data = images.load_image_folder(Path(args.data), args.image_size, channels=args.channels, limit=args.num_data)
    return data[: args.num_data], None


def make_networks(args, shape):
    """``(generator, critic)`` for data of shape ``shape`` (one point: ``[d]`` or ``[C, H, W]``)."""
    if args.arch == "dcgan":
        kwargs = {"image_size": args.image_size, "channels": shape[0], "width": args.width, "dropout": args.dropout}
        return (DCGANGenerator(args.latent_dim, **kwargs),
                DCGANCritic(**kwargs, batchnorm=args.critic_batchnorm))
    if args.arch == "resnet":
        common = {"channels": shape[0], "width": args.width, "dropout": args.dropout}
        return ResNetGenerator(args.latent_dim, **common), ResNetCritic(**common)
    dim = math.prod(shape)
    width, depth = critic_size(args)
    generator = mlp(args.latent_dim, dim, args.width, args.depth, args.activation)
    critic = mlp(dim, 1, width, depth, args.activation)
    if len(shape) == 1:
        return generator, critic
    return (torch.nn.Sequential(generator, torch.nn.Tanh(), torch.nn.Unflatten(-1, tuple(shape))),
            torch.nn.Sequential(torch.nn.Flatten(-len(shape)), critic))


def critic_size(args):
    """The MLP critic's ``(width, depth)``: the generator's unless given."""
    return (args.critic_width or args.width,
            args.depth if args.critic_depth is None else args.critic_depth)


def lr_factor(args):
    r"""The learning rates' multiplier at a step: a linear warm-up from 1% over ``--warmup``
    steps, then a linear decay to 1% over the final ``--lr-decay`` fraction of the steps."""
    start = args.steps * (1 - args.lr_decay)

    def factor(step):
        warm = 0.01 + 0.99 * min(step / args.warmup, 1.0) if args.warmup else 1.0
        decay = 1 - 0.99 * min(max(step - start, 0) / (args.steps - start), 1) if args.lr_decay else 1.0
        return warm * decay

    return factor


def make_optimizer(args):
    """Pyro's Adam with one learning rate per player (the critic's parameters are ``critic.*``);
    a :class:`pyro.optim.LambdaLR` around it when the learning rates warm up or decay."""

    def per_param(name):
        lr = args.lr_critic if name.startswith("critic") else args.lr_generator
        return {"lr": lr, "betas": tuple(args.betas)}

    if args.lr_decay == 0 and args.warmup == 0:
        return pyro.optim.Adam(per_param)
    return pyro.optim.LambdaLR({"optimizer": torch.optim.Adam, "optim_args": per_param, "lr_lambda": lr_factor(args)})
