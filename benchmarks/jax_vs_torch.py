"""A jit-compiled JAX step against the torch side's ``svi.step``, and a ``lax.scan`` run.

Part 1 times one step of the f-GAN ``gan`` objective on the same pairs as
``benchmarks/step_vs_pytorch.py`` (Adam, lr 2e-4, betas (0.5, 0.999), random data): the 2-D MLP
GAN (2-128-128-2 / 2-128-128-1, batch 256) and a 28x28 DCGAN pair (batch 64), the torch side as
``SVI(model, guide, Adam, FGANLoss("gan", critic)).step`` and the JAX side as
``jax.jit(FGAN("gan", ...).step)`` with the generator a NumPyro model through
``numpyro.contrib.module.flax_module``. The DCGAN pair here has no BatchNorm (the JAX side does
not yet carry Flax's mutable ``batch_stats``); both sides use the same layers. Steps are
interleaved so that background load affects both alike; medians are printed.

Part 2 runs PacGAN's 2-D ring (8 modes, radius 1, std 0.01) for ``--scan-steps`` steps (10,000 by
default) as one compiled ``lax.scan``, data drawn inside the scan, and compares its time per
step with the torch side's ``svi.step`` loop over ``--torch-steps`` steps of the same MLP pair.

    python benchmarks/jax_vs_torch.py --threads 1
"""

import argparse
import os
import statistics
import sys
import time


def _single_thread(threads):
    if threads == 1:  # before JAX is imported: XLA's CPU client reads the flags once
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()


def torch_pairs():
    import torch.nn as nn

    def mlp():
        g = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
        d = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
        return g, d, 2, (2,), 256

    def dcgan28():
        g = nn.Sequential(
            nn.Linear(100, 128 * 7 * 7, bias=False), nn.Unflatten(1, (128, 7, 7)), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
        )
        d = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(128 * 7 * 7, 1),
        )
        return g, d, 100, (1, 28, 28), 64

    return {"mlp": mlp, "dcgan28": dcgan28}


def flax_pairs():
    import flax.linen as nn
    import jax

    def mlp():
        g = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(128), nn.relu, nn.Dense(2)])
        d = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(128), nn.relu, nn.Dense(1)])
        return g, d, 2, (2,), 256

    class Generator(nn.Module):
        @nn.compact
        def __call__(self, z):
            h = nn.relu(nn.Dense(128 * 7 * 7, use_bias=False)(z)).reshape(z.shape[0], 7, 7, 128)
            h = nn.relu(nn.ConvTranspose(64, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)(h))
            return jax.numpy.tanh(nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME")(h))

    class Critic(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.leaky_relu(nn.Conv(64, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))(x), 0.2)
            h = nn.leaky_relu(nn.Conv(128, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False)(h), 0.2)
            return nn.Dense(1)(h.reshape(h.shape[0], -1))

    def dcgan28():
        return Generator(), Critic(), 100, (28, 28, 1), 64  # NHWC, Flax's layout

    return {"mlp": mlp, "dcgan28": dcgan28}


def torch_step(pair):
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI
    from pyro.optim import Adam

    from bayesgan.infer import FGANLoss

    g, d, latent, event_shape, batch = pair()

    def model(x):
        pyro.module("generator", g)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([latent]).to_event(1))
            pyro.sample("x", dist.Delta(g(z), event_dim=len(event_shape)), obs=x)

    pyro.clear_param_store()
    svi = SVI(model, lambda x: None, Adam({"lr": 2e-4, "betas": (0.5, 0.999)}), loss=FGANLoss("gan", d))
    return svi.step, torch.randn(batch, *event_shape)


def jax_objective(pair, key):
    import jax
    import numpyro
    import numpyro.distributions as dist
    import optax
    from numpyro.contrib.module import flax_module

    from bayesgan.jax import FGAN

    g, d, latent, event_shape, batch = pair()

    def model(x):
        net = flax_module("generator", g, input_shape=(1, latent))
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([latent]).to_event(1))
            numpyro.sample("x", dist.Delta(net(z), event_dim=len(event_shape)), obs=x)

    adam = optax.adam(2e-4, b1=0.5, b2=0.999)
    gan = FGAN("gan", generator_optimizer=adam, critic_optimizer=adam)
    x = jax.random.normal(key, (batch, *event_shape))
    return gan, gan.init(key, model, d, x), x


def time_steps(args):
    import jax

    results = {}
    for name in args.pairs:
        tstep, tx = torch_step(torch_pairs()[name])
        gan, state, x = jax_objective(flax_pairs()[name], jax.random.key(0))
        step = jax.jit(gan.step)
        keys = jax.random.split(jax.random.key(1), args.warmup + args.repeats)
        start = time.perf_counter()
        jax.block_until_ready(step(keys[0], state, x))
        compile_s = time.perf_counter() - start
        times = {"torch": [], "jax": []}
        for i in range(args.warmup + args.repeats):
            start = time.perf_counter()
            tstep(tx)
            t_torch = time.perf_counter() - start
            start = time.perf_counter()
            state, info = step(keys[i], state, x)
            jax.block_until_ready(info)
            t_jax = time.perf_counter() - start
            if i >= args.warmup:
                times["torch"].append(t_torch)
                times["jax"].append(t_jax)
        results[name] = {k: statistics.median(v) for k, v in times.items()} | {"compile": compile_s}
    return results


def ring_scan(args):
    import jax
    import jax.numpy as jnp

    gan, state, _ = jax_objective(flax_pairs()["mlp"], jax.random.key(0))
    angles = 2 * jnp.pi * jnp.arange(8) / 8
    means = jnp.stack([jnp.cos(angles), jnp.sin(angles)], 1)

    def body(state, key):
        k_mode, k_noise, k_step = jax.random.split(key, 3)
        modes = jax.random.randint(k_mode, (256,), 0, 8)
        x = means[modes] + 0.01 * jax.random.normal(k_noise, (256, 2))
        return gan.step(k_step, state, x)

    run = jax.jit(lambda s, keys: jax.lax.scan(body, s, keys))
    keys = jax.random.split(jax.random.key(1), args.scan_steps)
    start = time.perf_counter()
    compiled = run.lower(state, keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    final, infos = compiled(state, keys)
    jax.block_until_ready(infos)
    run_s = time.perf_counter() - start

    from bayesgan import datasets

    tstep, _ = torch_step(torch_pairs()["mlp"])
    data = datasets.ring()
    batches = [data.sample(256).float() for _ in range(args.torch_steps)]
    start = time.perf_counter()
    for xb in batches:
        tstep(xb)
    torch_s = time.perf_counter() - start
    return {"compile": compile_s, "run": run_s, "steps": args.scan_steps, "torch": torch_s,
            "torch_steps": args.torch_steps, "final_critic_loss": float(infos.critic_loss[-100:].mean())}


def main(args):
    _single_thread(args.threads)
    import jax
    import numpyro
    import torch

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, torch {torch.__version__}, threads {args.threads}")
    print(f"{'pair':<10} {'torch svi.step ms':>18} {'jax jit step ms':>16} {'torch/jax':>10} {'compile s':>10}")
    for name, t in time_steps(args).items():
        print(f"{name:<10} {1e3 * t['torch']:>18.3f} {1e3 * t['jax']:>16.3f} {t['torch'] / t['jax']:>10.2f} "
              f"{t['compile']:>10.2f}")
    if args.scan_steps:
        r = ring_scan(args)
        per_jax, per_torch = r["run"] / r["steps"], r["torch"] / r["torch_steps"]
        print(f"ring lax.scan: {r['steps']} steps in {r['run']:.2f} s ({1e3 * per_jax:.3f} ms/step, compile "
              f"{r['compile']:.2f} s); torch svi.step loop: {1e3 * per_torch:.3f} ms/step over {r['torch_steps']} "
              f"steps; torch/jax {per_torch / per_jax:.2f} (with compile: "
              f"{per_torch * r['steps'] / (r['run'] + r['compile']):.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pairs", nargs="+", default=["mlp", "dcgan28"], choices=["mlp", "dcgan28"])
    parser.add_argument("--scan-steps", type=int, default=10_000)
    parser.add_argument("--torch-steps", type=int, default=1000)
    sys.exit(main(parser.parse_args()))
