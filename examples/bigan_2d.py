"""BiGAN on 2-D data: the encoder is the Pyro guide, the critic scores (x, z) pairs.

The model is an MLP generator with a 2-D Gaussian latent; the guide is an MLP encoder, either
deterministic (``z = E(x)``, a ``Delta``) or stochastic (``z ~ N(mu(x), s(x))``). BiGANLoss
trains the two against a joint critic with a zero-centred gradient penalty on the pairs. After
training the script reports, on held-out data, the reconstruction error of ``G(E(x))``, the
cycle error of ``E(G(z))`` and the codes' mean and covariance against the prior
(:func:`bayesgan.latent.latent_report`).

``--data linear`` is the linear-Gaussian model of the tests (``x = W z + b``) and ``--data
banana`` the invertible map ``x = (z_1, z_2 + (z_1^2 - 1) / 2)``: on both an exact inverse
exists. The other names are :mod:`bayesgan.datasets` targets, whose thin supports no 2-D
Gaussian code can fill (the report says by how much).

    python examples/bigan_2d.py --data linear --steps 2000
    python examples/bigan_2d.py --data swiss_roll --encoder stochastic --out runs/bigan_2d
"""

import argparse
import json
import pathlib
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from bayesgan import datasets, latent
from bayesgan.infer import BiGANLoss
from bayesgan.nn import JointCritic, mlp
from bayesgan.penalties import GradientPenalty

W = torch.tensor([[1.0, 0.5], [-0.3, 0.8]])
B = torch.tensor([1.0, -1.0])
OWN = ("linear", "banana")


def load(name, n, seed):
    """``n`` points of a named target; ``linear`` and ``banana`` are invertible maps of N(0, I)."""
    if name not in OWN:
        return datasets.fixed_dataset(name, n, seed=seed)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    if name == "linear":
        return z @ W.T + B
    return torch.stack([z[:, 0], z[:, 1] + 0.5 * (z[:, 0] ** 2 - 1.0)], dim=-1)


def make(args):
    """The model, the guide and the loss; the networks are returned for plotting."""
    depth = 0 if args.data == "linear" else args.depth
    G = mlp(2, 2, width=args.width, depth=depth, activation="leaky_relu")
    out = 2 if args.encoder == "deterministic" else 4
    E = mlp(2, out, width=args.width, depth=depth, activation="leaky_relu")

    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            return pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    def guide(x):
        pyro.module("encoder", E)
        h = E(x)
        with pyro.plate("data", x.shape[0]):
            if args.encoder == "deterministic":
                return pyro.sample("z", dist.Delta(h, event_dim=1))
            loc, raw = h.chunk(2, dim=-1)
            scale = torch.nn.functional.softplus(raw) + 1e-3
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    critic = JointCritic.mlp(2, 2, width=args.width, depth=1)
    loss = BiGANLoss(critic, divergence=args.divergence, penalty=GradientPenalty(args.gp, center=0.0))
    return model, guide, loss, G, E


def plot(path, data, model, guide):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        codes = latent.encode(guide, data, mean=True)
        recon = latent.reconstruct(model, guide, data, mean=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    axes[0].scatter(*data.T, s=3, alpha=0.4, label="x")
    axes[0].scatter(*recon.T, s=3, alpha=0.4, label="G(E(x))")
    axes[0].legend()
    axes[0].set_title("data and reconstructions")
    axes[1].scatter(*codes.T, s=3, alpha=0.4, c=data[:, 0], cmap="viridis")
    axes[1].set_title("codes E(x), coloured by x_1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(args):
    torch.set_num_threads(args.threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    train = load(args.data, args.num_data, args.seed)
    test = load(args.data, args.num_data, 10_000 + args.seed)
    model, guide, loss, G, E = make(args)
    svi = SVI(model, guide, Adam({"lr": args.lr, "betas": (0.5, 0.999)}), loss)
    batches = datasets.batches(train, args.batch_size, generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    for step in range(args.steps):
        svi.step(next(batches))
        if not args.quiet and (step + 1) % max(1, args.steps // 10) == 0:
            values = ", ".join(f"{k} {loss.last[k]:.4f}" for k in ("critic_loss", "generator_loss", "encoder_loss"))
            print(f"step {step + 1}: {values}")
    seconds = time.perf_counter() - start
    report = latent.latent_report(model, guide, test, mean=True)
    result = {"data": args.data, "encoder": args.encoder, "steps": args.steps, "seconds": seconds, **report}
    print(json.dumps(result, indent=2))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps({"config": vars(args), "result": result}, indent=2))
        plot(out / "bigan_2d.png", test, model, guide)
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=[*OWN, *datasets.names()], default="linear")
    p.add_argument("--encoder", choices=["deterministic", "stochastic"], default="deterministic")
    p.add_argument("--divergence", default="gan")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--num-data", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=2, help="hidden layers of G and E (linear: 0)")
    p.add_argument("--gp", type=float, default=1.0, help="weight of the zero-centred gradient penalty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write report.json and bigan_2d.png here")
    p.add_argument("--quiet", action="store_true")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
