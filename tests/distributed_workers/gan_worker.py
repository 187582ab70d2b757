"""A worker for tests/test_distributed.py, launched by ``torchrun --nproc_per_node=2``; the test
imports it too, to compute the single-process reference with the same functions.

``equivalence OUT``: a few svi.steps of each loss with the library's helpers on this rank's half
of a fixed global batch with fixed latents; rank 0 saves every step's gradients, the parameters of
every rank (all-gathered), the reported metrics and the misuse errors to OUT.

``train OUT STEPS [--kill-after K] [--resume]``: a resumable loop with collective checkpoints every
2 steps; ``--kill-after K`` SIGKILLs every rank after step K.
"""

import argparse
import os
import signal
import sys

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI

from bayesgan import distributed
from bayesgan.checkpoint import TrainingState
from bayesgan.infer import SAM, FGANLoss, MMDLoss, WassersteinLoss
from bayesgan.models import GeneratorModel, prior_guide
from bayesgan.penalties import GeneratorGradientPenalty, GradientPenalty, _input_gradient

LOSSES = ("fgan", "wgan-gp", "mmd", "mmd-critic", "sam", "generator-penalty")
STEPS, BATCH, DIM = 3, 8, 2  # BATCH per rank


class FixedGradientPenalty(GradientPenalty):
    """WGAN-GP with interpolation weights fixed by each point (not drawn), so that a sharded run
    and one process use the same interpolates."""

    def __call__(self, critic, real, fake):
        eps = torch.sigmoid(7.0 * real.sum(-1, keepdim=True))
        norm = _input_gradient(critic, eps * real + (1 - eps) * fake).norm(dim=1)
        return self.weight * ((norm - self.center) ** 2).mean()


def networks():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.Tanh(), torch.nn.Linear(16, DIM))
    C = torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return G, C


def make_loss(name, critic, backward):
    if name == "fgan":
        return FGANLoss("gan", critic, backward=backward)
    if name == "wgan-gp":
        return WassersteinLoss(critic, penalty=FixedGradientPenalty(10.0), critic_steps=1, backward=backward)
    if name == "mmd":
        return MMDLoss(backward=backward)
    if name == "sam":  # two backward passes per step; the ascent uses the all-reduced gradient
        return SAM(FGANLoss("gan", critic, backward=backward), rho=0.05)
    if name == "generator-penalty":  # double backprop through the generator's DDP wrapper
        return FGANLoss("gan", critic, generator_penalty=GeneratorGradientPenalty(0.1), backward=backward)
    return MMDLoss(critic=critic, backward=backward)


def global_batches(world):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(STEPS, BATCH * world, DIM, generator=g, dtype=torch.float64)
    Z = torch.randn(STEPS, BATCH * world, DIM, generator=g, dtype=torch.float64)
    return X, Z


def run_loss(name, X, Z, rows, fabric=None):
    """``STEPS`` svi.steps on rows ``rows`` of the global batches; returns the inner networks,
    each step's gradients (after DDP's all-reduce) and each step's ``loss.last``. With a Lightning
    ``fabric``, the networks are set up by ``fabric.setup_module`` and ``fabric.backward`` runs."""
    pyro.clear_param_store()
    G, C = networks()
    if fabric is None:
        G_w, C_w = distributed.wrap(G), distributed.wrap(C)
    else:
        G_w, C_w = fabric.setup_module(G), fabric.setup_module(C)
    grads = []

    def backward(surrogate):
        surrogate.backward() if fabric is None else fabric.backward(surrogate)
        named = {f"G.{k}": p for k, p in G.named_parameters()}
        named.update({f"C.{k}": p for k, p in C.named_parameters()})
        grads.append({k: p.grad.clone() for k, p in named.items() if p.grad is not None})

    generator_model = GeneratorModel(G_w, latent_dim=DIM)

    def model(x, z):
        with poutine.condition(data={"z": z}):
            return generator_model(x)

    loss = make_loss(name, C_w, backward)
    svi = SVI(model, prior_guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
    records = []
    for s in range(STEPS):
        svi.step(X[s, rows], Z[s, rows])
        records.append(dict(loss.last))
    return G, C, grads, records


def flat(*modules):
    return torch.cat([p.detach().reshape(-1) for m in modules for p in m.parameters()])


def misuse(X, Z, rows):
    """The errors of the misuse the helpers detect (None where nothing was raised)."""
    errors = {}
    G, C = networks()
    cases = {
        "critic": (GeneratorModel(distributed.wrap(G), latent_dim=DIM), FGANLoss("gan", C)),
        "generator": (GeneratorModel(G, latent_dim=DIM), FGANLoss("gan", distributed.wrap(C))),
    }
    for case, (generator_model, loss) in cases.items():
        pyro.clear_param_store()

        def model(x, z, generator_model=generator_model):
            with poutine.condition(data={"z": z}):
                return generator_model(x)

        try:
            SVI(model, prior_guide, pyro.optim.Adam({"lr": 0.01}), loss=loss).step(X[0, rows], Z[0, rows])
            errors[case] = None
        except ValueError as error:
            errors[case] = str(error)
    return errors


def equivalence(out):
    context = distributed.setup()
    rank, world = context.rank, context.world_size
    X, Z = global_batches(world)
    rows = slice(rank * BATCH, (rank + 1) * BATCH)
    result = {"world_size": world}
    for name in LOSSES:
        G, C, grads, records = run_loss(name, X, Z, rows)
        params = flat(G, C)
        gathered = [torch.empty_like(params) for _ in range(world)]
        torch.distributed.all_gather(gathered, params)
        local = [None] * world
        torch.distributed.all_gather_object(local, records[-1])
        result[name] = {"grads": grads, "G": G.state_dict(), "C": C.state_dict(), "ranks": gathered,
                        "local_last": local, "mean_last": distributed.all_mean(records[-1]),
                        "last": records}
    result["misuse"] = misuse(X, Z, rows)
    # The library's file writers are rank 0's: a direct call on another rank writes nothing.
    from bayesgan.checkpoint import save_checkpoint

    save_checkpoint(os.path.join(out, f"direct-rank{rank}"), {"step": 0})
    if distributed.is_main_process():
        torch.save(result, os.path.join(out, "equivalence.pt"))
    distributed.barrier()
    train(os.path.join(out, "uninterrupted"), 6)  # the reference of the kill/resume test


def with_fabric(out):
    """FGANLoss under Lightning Fabric's DDP strategy: ``64-true`` (compared with one process) and
    ``bf16-mixed`` (finite, ranks identical)."""
    from lightning_fabric import Fabric

    result = {}
    for precision in ("64-true", "bf16-mixed"):
        torch.set_default_dtype(torch.float64 if precision == "64-true" else torch.float32)
        fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp", precision=precision)
        fabric.launch()
        X, Z = (t.to(torch.get_default_dtype()) for t in global_batches(fabric.world_size))
        rows = slice(fabric.global_rank * BATCH, (fabric.global_rank + 1) * BATCH)
        G, C, grads, records = run_loss("fgan", X, Z, rows, fabric=fabric)
        params = flat(G, C)
        gathered = [torch.empty_like(params) for _ in range(fabric.world_size)]
        torch.distributed.all_gather(gathered, params)
        result[precision] = {"grads": grads, "ranks": gathered, "last": distributed.all_mean(records[-1])}
    if distributed.is_main_process():
        torch.save(result, os.path.join(out, "fabric.pt"))


def train(out, steps, kill_after=None, resume=False):
    context = distributed.setup()
    pyro.clear_param_store()
    torch.manual_seed(3)
    data = torch.randn(64, DIM, dtype=torch.float64) * 0.5 + 1.0
    G, C = networks()
    G_w, C_w = distributed.wrap(G), distributed.wrap(C)
    distributed.seed(5)
    model = GeneratorModel(G_w, latent_dim=DIM)
    loss = FGANLoss("gan", C_w, critic_steps=2)
    optim = pyro.optim.Adam({"lr": 0.01})
    batches = distributed.ShardedMinibatches(data, BATCH, seed=7)
    state = TrainingState(modules={"generator": G_w, "critic": C_w}, optim=optim, loss=loss, model=model,
                          batches=batches)
    svi = SVI(model, prior_guide, optim, loss=loss)
    start = 0
    if resume:
        start = distributed.load_latest(os.path.join(out, "checkpoints"), state)[1]["step"]
    for step in range(start, steps):
        svi.step(next(batches))
        done = step + 1
        if done % 2 == 0:
            distributed.save_checkpoint(os.path.join(out, "checkpoints"), state, done, keep=2)
        if kill_after is not None and done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    params = flat(G, C)
    gathered = [torch.empty_like(params) for _ in range(context.world_size)]
    torch.distributed.all_gather(gathered, params)
    if distributed.is_main_process():
        torch.save({"ranks": gathered, "start": start, "last": distributed.all_mean(loss.last)},
                   os.path.join(out, "final.pt"))
    else:
        distributed.all_mean(loss.last)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("equivalence", "train", "fabric"))
    parser.add_argument("out")
    parser.add_argument("steps", type=int, nargs="?", default=6)
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    if args.mode == "equivalence":
        equivalence(args.out)
    elif args.mode == "fabric":
        with_fabric(args.out)
    else:
        train(args.out, args.steps, args.kill_after, args.resume)
    distributed.barrier()
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter's teardown, where gloo's threads sometimes abort


if __name__ == "__main__":
    sys.exit(main())
