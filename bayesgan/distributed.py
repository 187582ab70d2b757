r"""Training on several processes or GPUs with :mod:`torch.distributed`, equal to one process on
the global batch.

Launch the same script with ``torchrun --nproc_per_node=N script.py`` (or
``bayesgan train --nproc N``); a plain ``python script.py`` stays one process and every helper
here is then the identity. The loop is the usual one::

    from bayesgan import distributed

    context = distributed.setup()                    # gloo on CPU, nccl on CUDA
    generator, critic = make_networks()               # the same on every rank
    G, D = distributed.wrap(generator), distributed.wrap(critic)   # DDP: rank 0's weights
    distributed.seed(0)                               # after wrapping: z differs per rank
    model = GeneratorModel(G, latent_dim)             # registers G's inner module, calls G
    svi = SVI(model, prior_guide, pyro.optim.Adam({"lr": 1e-3}), loss=FGANLoss("gan", D))
    batches = ShardedMinibatches(data, batch_size, seed=0)  # this rank's share of each batch
    for step in range(steps):
        svi.step(next(batches))

What makes it equal to one process (measured in ``docs/distributed.md``): each network is wrapped
in its own :class:`~torch.nn.parallel.DistributedDataParallel`; Pyro's param store and optimizer
hold the *inner* module's parameters (the losses and :class:`~bayesgan.models.GeneratorModel`
register :func:`unwrap` of what they are given) while the forward passes that must be
synchronized go through the wrapper; the generator's term through the critic uses the inner
module with detached weights; every loss is a mean over the local batch, so DDP's averaging of
gradients is the gradient of the mean over the global batch. In several processes the losses
refuse a critic that is not wrapped (it would silently train a different critic on every rank).

Checkpoints are collectives (:func:`save_checkpoint`, :func:`load_latest`): rank 0 writes the
inner modules, the optimizer and every rank's random number generators; every rank loads in
place, so a run resumed on the same number of processes continues bit for bit.

>>> context = setup()               # not launched by torchrun: one process
>>> context.world_size, context.rank, is_main_process()
(1, 0, True)
>>> net = torch.nn.Linear(2, 1)
>>> wrap(net) is net, unwrap(net) is net
(True, True)
"""

import datetime
import os
from pathlib import Path
from types import SimpleNamespace

import pyro
import torch
import torch.distributed as dist

__all__ = [
    "ShardedMinibatches",
    "all_mean",
    "barrier",
    "gather",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "is_wrapped",
    "load_latest",
    "loader",
    "restore",
    "save_checkpoint",
    "seed",
    "setup",
    "unwrap",
    "wrap",
]


# -- processes ---------------------------------------------------------------------------------
def setup(backend=None, *, timeout_s=300):
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); without it, stay one process.

    :param str backend: ``"gloo"`` or ``"nccl"``; default nccl when CUDA is available, else gloo.
    :param float timeout_s: how long a collective waits for the other ranks.
    :returns: ``rank``, ``local_rank``, ``world_size`` and ``device`` (``cuda:LOCAL_RANK`` with
        nccl, else ``cpu``).
    :rtype: types.SimpleNamespace
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"Expected backend 'gloo' or 'nccl', actual {backend!r}")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    device = torch.device("cpu")
    if dist.is_initialized() and dist.get_backend() == "nccl":
        device = torch.device("cuda", local_rank)
    return SimpleNamespace(rank=get_rank(), local_rank=local_rank, world_size=get_world_size(), device=device)


def get_world_size():
    """The number of processes (1 when :mod:`torch.distributed` is not initialized)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank():
    """This process's rank (0 when :mod:`torch.distributed` is not initialized)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process():
    """Whether this is rank 0, the only process that writes files or prints."""
    return get_rank() == 0


def barrier():
    """Wait for every rank (nothing in one process)."""
    if get_world_size() > 1:
        dist.barrier()


def seed(base):
    """Seed Pyro's, torch's, NumPy's and Python's generators with ``base + rank``: each rank draws
    its own latents. Call it after :func:`wrap` (wrapping broadcasts rank 0's weights)."""
    pyro.set_rng_seed(int(base) + get_rank())


# -- modules -----------------------------------------------------------------------------------
def _inner(module):
    """The module a wrapper holds, or ``None`` for a plain module."""
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        return module.module
    if hasattr(module, "_original_module") and hasattr(module, "_forward_module"):  # Fabric's
        return module._original_module
    return None


def is_wrapped(module):
    """Whether ``module`` is a :class:`~torch.nn.parallel.DistributedDataParallel` or a Lightning
    Fabric wrapper (``fabric.setup_module``), whose forward passes synchronize gradients."""
    return _inner(module) is not None


def unwrap(module):
    """The plain module inside DDP and Fabric wrappers (``module`` itself if there is none): the
    one to register with Pyro, to save, and to sample with on one rank."""
    while (inner := _inner(module)) is not None:
        module = inner
    return module


def wrap(module, **ddp_kwargs):
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` when there are several
    processes, else ``module`` itself. Wrap each network on its own; on CUDA the module must
    already be on ``setup().device``.

    :param torch.nn.Module module: a plain module, the same on every rank (rank 0's weights and
        buffers are broadcast).
    :param ddp_kwargs: passed to DDP (``device_ids`` defaults to the module's CUDA device).
    """
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"Expected a torch.nn.Module, actual {type(module).__name__}")
    if is_wrapped(module):
        raise ValueError(f"Expected a plain module, actual one already wrapped ({type(module).__name__})")
    if get_world_size() == 1:
        return module
    if ddp_kwargs.get("find_unused_parameters"):
        raise ValueError(
            "Expected find_unused_parameters=False, actual True: the losses call the critic several "
            "times before one backward, which DDP refuses with unused-parameter search"
        )
    param = next(module.parameters(), None)
    if param is not None and param.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [param.device.index])
    return torch.nn.parallel.DistributedDataParallel(module, **ddp_kwargs)


def _registered(module, role):
    """The module to register with Pyro for a player given as ``module`` (its inner module),
    after checking that a multi-process run wraps it. ``role`` names it in the error."""
    if get_world_size() > 1 and not is_wrapped(module) and any(p.requires_grad for p in module.parameters()):
        raise ValueError(
            f"Expected the {role} wrapped for {get_world_size()} processes (bayesgan.distributed."
            f"wrap, DistributedDataParallel or fabric.setup_module), actual a plain "
            f"{type(module).__name__}: its gradients would not be averaged and every rank would "
            f"train a different {role}"
        )
    return unwrap(module)


# -- data --------------------------------------------------------------------------------------
class ShardedMinibatches:
    r"""This rank's share of every global minibatch, reshuffled each epoch, resumable.

    Each epoch a :class:`~torch.utils.data.DistributedSampler` (``shuffle=True``, ``seed``,
    ``drop_last=True``) deals this rank every ``world_size``-th index of one permutation of the
    data; consecutive ``batch_size`` of them form this rank's batch. Every rank therefore has the
    same number of batches (an uneven count would deadlock the gradients' all-reduce), and the
    ranks' batches together are a global batch of ``batch_size * world_size`` distinct points.
    Nothing is drawn from the global random streams, so the latents drawn between batches are
    the same with and without a resume. The epoch advances by itself; :meth:`set_epoch` sets it.

    :param torch.Tensor data: the data set, indexed along its first dimension.
    :param int batch_size: the per-process batch size.
    :param int seed: the seed of the permutations (the same on every rank).

    >>> it = ShardedMinibatches(torch.arange(6.0), 2, seed=0)   # one process: all of it
    >>> sorted(torch.cat([next(it) for _ in range(3)]).tolist())
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """

    def __init__(self, data, batch_size, *, seed=0, world_size=None, rank=None):
        from torch.utils.data import DistributedSampler

        world = get_world_size() if world_size is None else world_size
        rank = get_rank() if rank is None else rank
        if not isinstance(data, torch.Tensor) or data.dim() < 1:
            raise ValueError(f"Expected a tensor of data, actual {type(data).__name__}")
        share = len(data) // world
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= share:
            raise ValueError(
                f"Expected batch_size to be an int in [1, len(data) // world_size = {share}], actual {batch_size!r}"
            )
        self.data, self.batch_size = data, batch_size
        self.sampler = DistributedSampler(range(len(data)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Start epoch ``epoch``: its permutation, from its first batch."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)
        self._order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        self._position = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._position + self.batch_size > len(self._order):
            self.set_epoch(self.epoch + 1)
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return self.data[index.to(self.data.device)]

    def state_dict(self):
        """The epoch and the position in it (the same on every rank)."""
        return {"epoch": self.epoch, "position": self._position}

    def load_state_dict(self, state):
        """Continue from :meth:`state_dict`'s output."""
        self.set_epoch(state["epoch"])
        self._position = int(state["position"])


def loader(dataset, batch_size, *, seed=0, **kwargs):
    """A :class:`~torch.utils.data.DataLoader` over this rank's share of ``dataset`` with a
    :class:`~torch.utils.data.DistributedSampler` (``shuffle=True``, ``drop_last=True``) and its
    own :class:`torch.Generator`: iterating it draws nothing from the global stream. Call
    ``loader.sampler.set_epoch(epoch)`` before each epoch."""
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=True,
                                 seed=seed, drop_last=True)
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=generator, **kwargs)


# -- batch-level statistics -------------------------------------------------------------------
class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        # Every rank differentiates its own copy of the global statistic: this rank's rows
        # receive the sum of all ranks' gradients, and DDP's average then gives the global one.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        rank = dist.get_rank()
        return grad[rank * ctx.rows : (rank + 1) * ctx.rows]


def gather(tensor):
    """The global batch: every rank's ``tensor`` (equal shapes) concatenated in rank order, with
    gradients flowing back to each rank's rows; ``tensor`` itself in one process.

    For a loss that is not a mean over samples (MMD's pairwise statistic) computed identically
    on every rank from gathered batches, DDP's averaged gradient is then exactly the gradient of
    the global statistic."""
    if get_world_size() == 1:
        return tensor
    return _Gather.apply(tensor)


# -- metrics -----------------------------------------------------------------------------------
def all_mean(values):
    """The mean over ranks of a number, a tensor, or the floats of a dict (e.g. ``loss.last``;
    its ints, such as the step, and other entries are kept as they are). A collective: every
    rank calls it.

    >>> all_mean({"critic_loss": 0.5, "generator_updated": True})
    {'critic_loss': 0.5, 'generator_updated': True}
    """
    world = get_world_size()
    if isinstance(values, dict):
        keys = [k for k, v in values.items() if isinstance(v, float)]
        if world == 1 or not keys:
            return dict(values)
        means = all_mean(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
        return {**values, **dict(zip(keys, means.tolist()))}
    if isinstance(values, torch.Tensor):
        if world == 1:
            return values.clone()
        total = values.detach().clone()
        if dist.get_backend() == "nccl":
            total = total.cuda()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return (total / world).to(values.device)
    return float(all_mean(torch.tensor(float(values), dtype=torch.float64)))


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(directory, state, step, *, keep=3, extra=None):
    """Save a :class:`~bayesgan.checkpoint.TrainingState` as a collective: every rank sends its
    random number generators to rank 0, which writes the checkpoint atomically (the inner modules,
    the optimizer, ``rank_rng`` and ``world_size``); then every rank waits for the file.

    :param directory: the checkpoint folder.
    :param state: the :class:`~bayesgan.checkpoint.TrainingState` (the same objects on every rank).
    :param int step: the number of completed steps.
    :param int keep: how many checkpoints rank 0 keeps.
    :param dict extra: plain data to store too (rank 0's is written).
    :returns: the path written.
    """
    from . import checkpoint

    captured = state.capture(step)
    captured.update(extra or {})
    world = get_world_size()
    rngs = [captured["rng"]]
    if world > 1:
        rngs = [None] * world
        dist.all_gather_object(rngs, captured["rng"])
    captured.update(rank_rng=rngs, world_size=world)
    path = None
    if is_main_process():
        path = checkpoint.save_checkpoint(directory, captured, keep=keep)
    if world > 1:
        box = [str(path) if path is not None else None]
        dist.broadcast_object_list(box, src=0)
        dist.barrier()
        path = box[0]
    return Path(path)


def load_latest(directory, state):
    """Restore the newest readable checkpoint in ``directory`` into ``state`` on every rank, in
    place, and give each rank its own saved random number generators. A collective.

    :returns: ``(path, saved)``, or ``None`` when there is no checkpoint.
    :raises bayesgan.checkpoint.CheckpointError: if it was saved by another number of processes.
    """
    from . import checkpoint

    found = checkpoint.load_latest(directory) if is_main_process() else None
    world = get_world_size()
    if world > 1:  # every rank loads the file rank 0 chose (a newer one may appear meanwhile)
        box = [str(found[0]) if found is not None else None]
        dist.broadcast_object_list(box, src=0)
        if not is_main_process() and box[0] is not None:
            found = (Path(box[0]), checkpoint.load_checkpoint(box[0]))
    if found is None:
        return None
    path, saved = found
    restore(state, saved, path)
    return path, saved


def restore(state, saved, path="the checkpoint"):
    """Load a checkpoint's content ``saved`` into ``state`` on this rank, in place, with this
    rank's own random number generators; return its step.

    :raises bayesgan.checkpoint.CheckpointError: if it was saved by another number of processes.
    """
    from . import checkpoint

    world, saved_world = get_world_size(), saved.get("world_size", 1)
    if saved_world != world:
        raise checkpoint.CheckpointError(
            f"Expected a checkpoint saved by {world} processes to resume on {world}, actual "
            f"{saved_world} in {path}: the data shards and the ranks' random streams differ"
        )
    step = state.restore(saved)
    checkpoint.set_rng_state(saved["rank_rng"][get_rank()] if "rank_rng" in saved else saved["rng"])
    return step
