"""One ``svi.step`` with ``FGANLoss`` against a hand-written PyTorch GAN step.

Same networks, same batch, same optimizer (Adam, betas (0.5, 0.999)), random data. The plain
step is the loop users write by hand: a critic update on ``fake.detach()``, then a generator
update through the critic. Prints the median time of each and their ratio, interleaving them
so that background load affects all alike. The last two columns time the same ``svi.step`` with
:class:`bayesgan.optim.Adam` (one grouped torch optimizer) in place of :class:`pyro.optim.Adam`
(one torch optimizer per parameter tensor). On a shared machine, where other processes preempt
the steps and make wall times bimodal, ``--clock cpu`` times the thread's CPU time instead.

    python benchmarks/step_vs_pytorch.py --threads 1 --repeats 200
"""

import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F
from pyro.infer import SVI
from pyro.optim import Adam

import bayesgan.optim
from bayesgan.infer import FGANLoss


def mlp_pair():
    g = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    d = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    return g, d, 2, (2,), 256


def dcgan28_pair():
    g = nn.Sequential(
        nn.Linear(100, 128 * 7 * 7, bias=False), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1),
    )
    return g, d, 100, (1, 28, 28), 64


def bayesgan_step(g, d, latent, event_shape, optim=Adam, prefix=""):
    # a distinct prefix per interleaved SVI: Pyro's param store is global, and a second
    # pyro.module("generator", ...) would silently train the first one's parameters
    def model(x):
        pyro.module(prefix + "generator", g)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([latent]).to_event(1))
            pyro.sample("x", dist.Delta(g(z), event_dim=len(event_shape)), obs=x)

    loss = FGANLoss("gan", d, critic_name=prefix + "critic")
    svi = SVI(model, lambda x: None, optim({"lr": 2e-4, "betas": (0.5, 0.999)}), loss=loss)
    return svi.step


def grouped_step(g, d, latent, event_shape):
    return bayesgan_step(g, d, latent, event_shape, optim=bayesgan.optim.Adam, prefix="grouped_")


def plain_step(g, d, latent, event_shape):
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(x):
        fake = g(torch.randn(x.shape[0], latent))
        d_loss = F.softplus(-d(x)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-d(fake)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        return d_loss.item(), g_loss.item()

    return step


def measure(pair, repeats, warmup, clock=time.perf_counter):
    g, d, latent, event_shape, batch = pair()
    x = torch.randn(batch, *event_shape)
    steps = {}
    for name, make in (("bayesgan", bayesgan_step), ("plain", plain_step), ("grouped", grouped_step)):
        pyro.clear_param_store()
        g2, d2 = pair()[:2]
        g2.load_state_dict(g.state_dict())
        d2.load_state_dict(d.state_dict())
        steps[name] = make(g2, d2, latent, event_shape)
    times = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            start = clock()
            step(x)
            if i >= warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


PAIRS = (("mlp", mlp_pair, 1.3), ("dcgan28", dcgan28_pair, 1.05))


def main(args):
    torch.set_num_threads(args.threads)
    clock = {"wall": time.perf_counter, "cpu": time.thread_time}[args.clock]
    cpu_note = ", CPU time" if args.clock == "cpu" else ""
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, threads {args.threads}{cpu_note}")
    header = f"{'pair':<10} {'bayesgan ms':>12} {'plain ms':>10} {'ratio':>7} {'target':>7}"
    print(f"{header} {'grouped ms':>11} {'ratio':>7}")
    for name, pair, target in PAIRS[: args.pairs]:
        t = measure(pair, args.repeats, args.warmup, clock)
        ratio = t["bayesgan"] / t["plain"]
        grouped = t["grouped"] / t["plain"]
        print(
            f"{name:<10} {1e3 * t['bayesgan']:>12.3f} {1e3 * t['plain']:>10.3f} {ratio:>7.3f} {target:>7.2f}"
            f" {1e3 * t['grouped']:>11.3f} {grouped:>7.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=2, help="1: the MLP only")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: the thread's CPU time")
    main(parser.parse_args())
