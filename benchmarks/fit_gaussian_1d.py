"""Fit a 1-D Gaussian generator with every f-divergence.

The generator is ``x = mu + s z`` with ``z ~ N(0, 1)``, started at ``mu = 0, s = 1``; the data
are fresh draws from ``N(3, 0.5^2)`` at every step. Training is a plain :class:`pyro.infer.SVI`
loop with :class:`bayesgan.infer.FGANLoss`, :class:`pyro.optim.ClippedAdam` (one learning rate
for both players unless ``--critic-lr``) and a LeakyReLU MLP critic ``1-w-w-1``. A fit passes when
``mu`` is within 0.05 of 3 and ``s`` within 10% of 0.5.

The estimate is the parameters' final value; with ``--average F`` it is their mean over the last
fraction ``F`` of the steps instead (an iterate average, which removes the step-to-step jitter
of the two-player game).

Without ``--lr`` and ``--output-penalty`` every divergence runs with its measured settings
(:data:`TUNED`, the table in ``docs/divergences.md``); the flags override them for all rows.

Examples::

    python benchmarks/fit_gaussian_1d.py                          # every row, seeds 0 1 2
    python benchmarks/fit_gaussian_1d.py --divergence neyman --output-penalty 0 --trace 100
    python benchmarks/fit_gaussian_1d.py --divergence alpha:alpha=2 --seeds 0 1 2 3 4 --markdown
"""

import argparse
import statistics
import time

import torch
import pyro
import pyro.distributions as dist
from pyro.distributions import constraints
from pyro.infer import SVI
from pyro.optim import ClippedAdam

from bayesgan import divergences
from bayesgan.penalties import OutputPenalty
from bayesgan.infer import FGANLoss, TrainingDivergedError

LOC, SCALE = 3.0, 0.5
ALL = [
    "total_variation", "kl", "reverse_kl", "pearson", "neyman", "squared_hellinger", "js", "gan",
    "weighted_js", "alpha", "alpha:alpha=2",
]
#: Measured settings per row (``tests/test_fgan_fit.py`` says why, row by row); the rest use
#: ``lr=1e-2`` and no penalty.
TUNED = {
    "total_variation": {"lr": 5e-3, "output_penalty": 0.1},
    "neyman": {"output_penalty": 0.1},
}
ACTIVATIONS = {
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.2),
    "elu": torch.nn.ELU,
    "silu": torch.nn.SiLU,
    "tanh": torch.nn.Tanh,
}


def parse_divergence(spec):
    """``"name"`` or ``"name:key=value,..."`` -> a :class:`~bayesgan.divergences.Divergence`."""
    name, _, rest = spec.partition(":")
    kwargs = {k: float(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)}
    return divergences.get(name, **kwargs)


def model(x, start_mu=0.0, start_s=1.0):
    mu = pyro.param("mu", torch.full((1,), start_mu, dtype=x.dtype))
    s = pyro.param("s", torch.full((1,), start_s, dtype=x.dtype), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0).expand([1]).to_event(1))
        pyro.sample("x", dist.Delta(mu + s * z, event_dim=1), obs=x)


def guide(x, start_mu=0.0, start_s=1.0):
    pass


def make_critic(width, dtype=torch.float32, activation="leaky_relu"):
    """The MLP critic ``1-width-width-1``."""
    act = ACTIVATIONS[activation]
    return torch.nn.Sequential(
        torch.nn.Linear(1, width), act(),
        torch.nn.Linear(width, width), act(),
        torch.nn.Linear(width, 1),
    ).to(dtype)


def fit(divergence, *, seed, steps=1000, batch=256, lr=1e-2, critic_lr=None, betas=(0.5, 0.999),
        objective=None, critic_steps=1, critic_width=64, critic_activation="leaky_relu",
        start_mu=0.0, start_s=1.0, lr_final=1.0, average=0.0, clip_norm=10.0, output_penalty=0.0,
        dtype=torch.float32, trace=0):
    """Train once; return ``(mu, s, seconds, note)``; ``note`` is ``""`` or why it stopped."""
    pyro.clear_param_store()
    torch.manual_seed(seed)
    critic = make_critic(critic_width, dtype, critic_activation)
    critic_lr = lr if critic_lr is None else critic_lr
    lrd = lr_final ** (1.0 / steps)

    def per_param(name, param):
        return {"lr": critic_lr if name.startswith("critic") else lr, "betas": betas,
                "lrd": lrd, "clip_norm": clip_norm}

    penalty = OutputPenalty(output_penalty) if output_penalty > 0 else None
    loss = FGANLoss(divergence, critic, critic_steps=critic_steps, generator_objective=objective,
                    penalty=penalty)
    svi = SVI(model, guide, ClippedAdam(per_param), loss=loss)
    data = torch.Generator().manual_seed(10_000 + seed)
    tail = max(1, round(average * steps))
    sums, note = [0.0, 0.0], ""
    start = time.perf_counter()
    for step in range(steps):
        x = (LOC + SCALE * torch.randn(batch, 1, generator=data, dtype=torch.float64)).to(dtype)
        try:
            svi.step(x, start_mu, start_s)
        except TrainingDivergedError:
            note = f"non-finite at step {step}"
            break
        mu, s = pyro.param("mu").item(), pyro.param("s").item()
        if trace and step % trace == 0:
            last = loss.last
            print(f"  step {step:>5}  mu {mu:8.4f}  s {s:8.4f}  estimate {last['divergence']:10.4f}  "
                  f"T_real {last['critic_real']:10.4g}  T_fake {last['critic_fake']:10.4g}", flush=True)
        if step >= steps - tail:
            sums = [sums[0] + mu, sums[1] + s]
    seconds = time.perf_counter() - start
    if note:
        return float("nan"), float("nan"), seconds, note
    if average > 0:
        return sums[0] / tail, sums[1] / tail, seconds, note
    return mu, s, seconds, note


def passes(mu, s):
    return abs(mu - LOC) < 0.05 and abs(s - SCALE) / SCALE < 0.10


def _settings(spec, args):
    tuned = TUNED.get(spec.partition(":")[0], {})
    lr = args.lr if args.lr is not None else tuned.get("lr", 1e-2)
    penalty = args.output_penalty if args.output_penalty is not None else tuned.get("output_penalty", 0.0)
    return lr, penalty


def _spread(values):
    values = [v for v in values if v == v]
    if not values:
        return "nan"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f} [{min(values):.3f}, {max(values):.3f}]"


def main(args):
    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else torch.float32
    specs = ALL if args.divergence == ["all"] else args.divergence
    print(f"{'divergence':<18} {'objective':<14} {'lr':>7} {'pen':>5} {'seed':>4} {'mu':>8} {'s':>8} "
          f"{'pass':>5} {'sec':>6}")
    summary, failures = [], 0
    for spec in specs:
        div = parse_divergence(spec)
        objective = args.objective or div.default_generator_objective
        lr, penalty = _settings(spec, args)
        rows = []
        for seed in args.seeds:
            mu, s, sec, note = fit(
                div, seed=seed, steps=args.steps, batch=args.batch, lr=lr, critic_lr=args.critic_lr,
                betas=(args.beta1, args.beta2), objective=objective, critic_steps=args.critic_steps,
                critic_width=args.critic_width, critic_activation=args.critic_activation,
                start_mu=args.start_mu, start_s=args.start_s, lr_final=args.lr_final,
                average=args.average, clip_norm=args.clip_norm, output_penalty=penalty,
                dtype=dtype, trace=args.trace)
            ok = passes(mu, s)
            failures += not ok
            rows.append((mu, s, sec, ok))
            print(f"{spec:<18} {objective:<14} {lr:>7.0e} {penalty:>5g} {seed:>4} {mu:>8.4f} {s:>8.4f} "
                  f"{'yes' if ok else 'NO':>5} {sec:>6.1f} {note}", flush=True)
        summary.append((spec, objective, lr, penalty, rows))
    if args.markdown:
        print("\n| divergence | objective | lr | output penalty | steps | mu (mean ± sd [min, max]) "
              "| s (mean ± sd [min, max]) | passed | s/fit |")
        print("|---|---|---|---|---|---|---|---|---|")
        for spec, objective, lr, penalty, rows in summary:
            mus, ss, secs, oks = zip(*rows)
            print(f"| {spec} | {objective} | {lr:g} | {penalty:g} | {args.steps} | {_spread(mus)} | "
                  f"{_spread(ss)} | {sum(oks)}/{len(oks)} | {statistics.mean(secs):.1f} |")
    return failures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divergence", nargs="+", default=["all"],
                        help="names (name:key=value for parameters, e.g. alpha:alpha=2) or 'all'")
    parser.add_argument("--objective", default=None, choices=["saturating", "nonsaturating"],
                        help="generator objective (default: the divergence's default)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate of both players (default: tuned per divergence)")
    parser.add_argument("--critic-lr", type=float, default=None, help="default: --lr")
    parser.add_argument("--beta1", type=float, default=0.5)
    parser.add_argument("--beta2", type=float, default=0.999)
    parser.add_argument("--lr-final", type=float, default=1.0,
                        help="learning rates decay geometrically to this fraction at the end")
    parser.add_argument("--clip-norm", type=float, default=10.0,
                        help="ClippedAdam's per-parameter gradient-norm clip (Pyro's default 10)")
    parser.add_argument("--output-penalty", type=float, default=None,
                        help="weight w of the critic penalty w (E_P V^2 + E_Q V^2) "
                             "(default: tuned per divergence)")
    parser.add_argument("--critic-steps", type=int, default=1)
    parser.add_argument("--critic-width", type=int, default=64)
    parser.add_argument("--critic-activation", default="leaky_relu", choices=sorted(ACTIVATIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start-mu", type=float, default=0.0)
    parser.add_argument("--start-s", type=float, default=1.0)
    parser.add_argument("--average", type=float, default=0.0,
                        help="report the mean over the last fraction of steps (0: final value)")
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--trace", type=int, default=0, help="print mu, s every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true", help="also print a summary table")
    raise SystemExit(1 if main(parser.parse_args()) else 0)
