"""BiGAN on 8x8 digits: an encoder guide gives embeddings and reconstructions of real images.

scikit-learn's ``load_digits`` (1,797 images of 8x8 pixels, 16 grey levels, scaled to [-1, 1])
is split into a training and a held-out set. The model is an MLP generator from a Gaussian
latent to images; the guide is an MLP encoder (deterministic, ``z = E(x)``, or stochastic); the
critic is :class:`bayesgan.nn.JointCritic.conv` with a zero-centred gradient penalty on the
pairs. On the held-out set the script reports the reconstruction error of ``G(E(x))``, the
cycle error of ``E(G(z))``, the codes' moments against the prior
(:func:`bayesgan.latent.latent_report`), and the accuracy of a logistic regression fitted to
the codes of the training set (a linear probe: the digits' labels are never used in training).

    python examples/bigan_digits.py --steps 1500 --out runs/bigan_digits
"""

import argparse
import json
import pathlib
import time

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from bayesgan import datasets, images, latent
from bayesgan.infer import BiGANLoss
from bayesgan.nn import JointCritic, mlp
from bayesgan.penalties import GradientPenalty


def load(num_test, seed):
    """``(x_train, y_train, x_test, y_test)``: images ``[N, 1, 8, 8]`` in [-1, 1] and labels."""
    x, y = images.load_digits(labels=True, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test, train = order[:num_test], order[num_test:]
    return x[train], y[train], x[test], y[test]


def make(args):
    G = torch.nn.Sequential(
        mlp(args.latent_dim, 64, width=args.width, depth=2, activation="leaky_relu"),
        torch.nn.Tanh(),
        torch.nn.Unflatten(1, (1, 8, 8)),
    )
    out = args.latent_dim * (1 if args.encoder == "deterministic" else 2)
    E = torch.nn.Sequential(torch.nn.Flatten(), mlp(64, out, width=args.width, depth=2, activation="leaky_relu"))

    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([args.latent_dim]).to_event(1))
            return pyro.sample("x", dist.Delta(G(z), event_dim=3), obs=x)

    def guide(x):
        pyro.module("encoder", E)
        h = E(x)
        with pyro.plate("data", x.shape[0]):
            if args.encoder == "deterministic":
                return pyro.sample("z", dist.Delta(h, event_dim=1))
            loc, raw = h.chunk(2, dim=-1)
            return pyro.sample("z", dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-3).to_event(1))

    critic = JointCritic.conv((1, 8, 8), args.latent_dim, channels=args.channels, width=args.width)
    loss = BiGANLoss(critic, divergence=args.divergence, penalty=GradientPenalty(args.gp, center=0.0))
    return model, guide, loss


def probe(guide, x_train, y_train, x_test, y_test):
    """Held-out accuracy of a logistic regression on the codes (and on the pixels, for scale)."""
    from sklearn.linear_model import LogisticRegression

    def accuracy(train, test):
        fit = LogisticRegression(max_iter=2000).fit(train.numpy(), y_train.numpy())
        return float(fit.score(test.numpy(), y_test.numpy()))

    codes = [latent.encode(guide, x, mean=True) for x in (x_train, x_test)]
    return {"probe_accuracy": accuracy(*codes), "pixel_probe_accuracy": accuracy(x_train.flatten(1), x_test.flatten(1))}


def plot(path, model, guide, x):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        rows = [x, latent.reconstruct(model, guide, x, mean=True), _samples(model, x)]
    fig, axes = plt.subplots(3, len(x), figsize=(len(x) * 0.8, 2.6))
    for r, (row, name) in enumerate(zip(rows, ("data", "G(E(x))", "G(z)"))):
        for c in range(len(x)):
            axes[r, c].imshow(row[c, 0].numpy(), cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _samples(model, x):
    """Draws ``G(z)``, ``z ~ p(z)``: the model with its observation left unobserved."""
    return poutine.trace(poutine.uncondition(model)).get_trace(x).nodes["x"]["value"]


def main(args):
    torch.set_num_threads(args.threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    x_train, y_train, x_test, y_test = load(args.num_test, args.seed)
    model, guide, loss = make(args)
    svi = SVI(model, guide, Adam({"lr": args.lr, "betas": (0.5, 0.999)}), loss)
    batches = datasets.batches(x_train, args.batch_size, generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    for step in range(args.steps):
        svi.step(next(batches))
        if not args.quiet and (step + 1) % max(1, args.steps // 10) == 0:
            values = ", ".join(f"{k} {loss.last[k]:.4f}" for k in ("critic_loss", "generator_loss", "encoder_loss"))
            print(f"step {step + 1}: {values}")
    seconds = time.perf_counter() - start
    result = {"encoder": args.encoder, "steps": args.steps, "seconds": seconds}
    result.update(latent.latent_report(model, guide, x_test, mean=True))
    result.update(probe(guide, x_train, y_train, x_test, y_test))
    print(json.dumps(result, indent=2))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps({"config": vars(args), "result": result}, indent=2))
        plot(out / "bigan_digits.png", model, guide, x_test[:12])
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", choices=["deterministic", "stochastic"], default="deterministic")
    p.add_argument("--divergence", default="gan")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-test", type=int, default=297)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--gp", type=float, default=10.0, help="weight of the zero-centred gradient penalty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write report.json and bigan_digits.png here")
    p.add_argument("--quiet", action="store_true")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
