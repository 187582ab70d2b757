r"""Checkpoints that survive a kill, and a training state that resumes bit for bit.

A checkpoint is one file ``ckpt-{step:08d}.pt`` holding only tensors, numbers, strings, lists and
dicts, so :func:`torch.load` reads it with ``weights_only=True``: a checkpoint from someone else
cannot execute code. :func:`save_checkpoint` writes it atomically (a temporary file in the same
folder, flushed and ``fsync``-ed, renamed over the final name, the folder ``fsync``-ed) and keeps
the newest ``keep``; a process killed at any moment leaves the previous checkpoints intact. Each
file carries a SHA-256 digest of its content, so :func:`load_latest` detects a truncated or
corrupted file, warns with its name, and falls back to the one before.

:class:`TrainingState` gathers everything a training step reads: the networks' state dicts with
their buffers (Pyro's param store alone drops BatchNorm statistics), Pyro's param store, the
optimizer's state (learning-rate schedulers included), the :class:`~bayesgan.ema.EMA`, the
loss's step counters (critic steps, lazy penalties, the relaxation schedule), the minibatch
order (:class:`Minibatches`) and the random number generators of torch, NumPy and Python. On CPU
a run restored from a checkpoint continues exactly as the uninterrupted run would have.

>>> import tempfile, torch
>>> net = torch.nn.Linear(2, 1)
>>> state = TrainingState(modules={"net": net}, config={"lr": 0.1})
>>> folder = tempfile.mkdtemp()
>>> path = save_checkpoint(folder, state.capture(step=10), keep=2)
>>> path.name
'ckpt-00000010.pt'
>>> path, loaded = load_latest(folder)
>>> state.restore(loaded), loaded["config"]
(10, {'lr': 0.1})
"""

import hashlib
import os
import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.distributions import constraints

from .distributed import is_main_process, unwrap
from .infer.sam import _counters, _set_counters

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "Minibatches",
    "TrainingState",
    "UnsafeCheckpointError",
    "checkpoint_paths",
    "load_checkpoint",
    "load_latest",
    "save_checkpoint",
]

FORMAT = "bayesgan-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")


class CheckpointError(Exception):
    """A checkpoint is missing, truncated, corrupt or does not fit the run."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects other than tensors and plain data: it is refused
    unread, since unpickling them could execute code."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (truncated or corrupt) in favour of an older one."""


# -- files -------------------------------------------------------------------------------------
def checkpoint_paths(directory):
    """The checkpoint files ``ckpt-*.pt`` in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(directory, state, *, keep=3):
    r"""Write ``state`` (a dict with an int ``"step"``, e.g. :meth:`TrainingState.capture`'s) to
    ``directory/ckpt-{step:08d}.pt`` atomically, then delete all but the newest ``keep``.

    :param directory: the folder (created if missing).
    :param dict state: tensors, numbers, strings, lists and dicts only.
    :param int keep: how many checkpoints to keep, at least 1 (2 or more leave a fallback).
    :returns: the path written. On several processes only rank 0 writes; the other ranks return
        the same path without writing (use :func:`bayesgan.distributed.save_checkpoint`, which
        also saves every rank's random number generators).
    :rtype: pathlib.Path
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"Expected keep to be an int >= 1, actual {keep!r}")
    step = state.get("step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"Expected a state dict with an int 'step' >= 0, actual {step!r}")
    directory = Path(directory)
    if not is_main_process():  # several processes: rank 0 alone writes (distributed.save_checkpoint)
        return directory / f"ckpt-{step:08d}.pt"
    directory.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in state.items() if k != "sha256"}
    payload = {"format": FORMAT, "version": VERSION, **body, "sha256": _digest(body)}
    path = directory / f"ckpt-{step:08d}.pt"
    temporary = directory / f".{path.name}.tmp"
    with open(temporary, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_directory(directory)
    for old in checkpoint_paths(directory)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in directory.glob(".ckpt-*.pt.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    return path


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): the rename is all there is
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path):
    """Read one checkpoint with ``torch.load(weights_only=True)`` and check its digest.

    :raises UnsafeCheckpointError: if the file holds pickled code or objects (never executed).
    :raises CheckpointError: if it is missing, truncated, corrupt or not a bayesgan checkpoint.
    :rtype: dict
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"Expected a checkpoint file at {path}, actual no such file") from None
    except pickle.UnpicklingError as error:
        if "weights only load failed" in str(error).lower():
            raise UnsafeCheckpointError(
                f"Expected a checkpoint of tensors and plain data at {path}, actual a file with "
                f"pickled objects that could execute code; it was not loaded. Only load "
                f"checkpoints you trust, and never with weights_only=False"
            ) from None
        raise CheckpointError(f"Expected a readable checkpoint at {path}, actual {error}") from None
    except Exception as error:  # truncated zip, bad header, empty file: all mean unreadable
        raise CheckpointError(
            f"Expected a readable checkpoint at {path}, actual {type(error).__name__}: {error} "
            f"(truncated or corrupt)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"Expected a {FORMAT} file at {path}, actual another kind of file")
    if state.get("version") != VERSION:
        raise CheckpointError(f"Expected checkpoint version {VERSION} at {path}, actual {state.get('version')!r}")
    body = {k: v for k, v in state.items() if k not in ("format", "version", "sha256")}
    if state.get("sha256") != _digest(body):
        raise CheckpointError(
            f"Expected the content of {path} to match its SHA-256 digest, actual a mismatch (corrupt)"
        )
    return body


def load_latest(directory):
    """The newest readable checkpoint in ``directory`` as ``(path, state)``, or ``None`` if there
    is none. A truncated or corrupt file is skipped with a :class:`CheckpointWarning` naming it.

    :raises CheckpointError: if there are checkpoints but none is readable.
    :raises UnsafeCheckpointError: if the newest readable candidate holds pickled code.
    """
    paths = checkpoint_paths(directory)
    bad = []
    for path in reversed(paths):
        try:
            return path, load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as error:
            bad.append(path.name)
            warnings.warn(f"Skipping checkpoint {path}: {error}; trying the previous one", CheckpointWarning)
    if bad:
        raise CheckpointError(
            f"Expected a readable checkpoint in {directory}, actual {len(bad)} unreadable: {', '.join(bad)}"
        )
    return None


def _digest(state):
    """SHA-256 of a nested structure of dicts, lists, tensors and scalars, in a fixed order."""
    h = hashlib.sha256()

    def visit(value):
        if isinstance(value, dict):
            h.update(b"{%d" % len(value))
            for key in sorted(value, key=repr):
                h.update(repr(key).encode())
                visit(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(b"[%d" % len(value))
            for item in value:
                visit(item)
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(f"{type(value).__name__}:{value!r}".encode())

    visit(state)
    return h.hexdigest()


# -- minibatches -------------------------------------------------------------------------------
class Minibatches:
    r"""An infinite iterator over minibatches that reshuffles every epoch and can be resumed.

    It yields the same batches as :func:`bayesgan.datasets.batches` with a generator seeded
    with ``seed``; :meth:`state_dict` records the generator's state at the start of the epoch
    and the position in it, so a restored iterator continues with the next batch.

    :param torch.Tensor data: the data set, indexed along its first dimension.
    :param int batch_size: between 1 and ``len(data)``.
    :param int seed: the seed of the permutations.

    >>> it = Minibatches(torch.arange(6.0), 2, seed=0)
    >>> first = next(it)
    >>> saved = it.state_dict()
    >>> second = next(it)
    >>> it.load_state_dict(saved)
    >>> torch.equal(next(it), second)
    True
    """

    def __init__(self, data, batch_size, *, seed=0):
        if not isinstance(data, torch.Tensor) or data.dim() < 1 or len(data) < 1:
            raise ValueError(f"Expected a non-empty tensor of data, actual {type(data).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= len(data):
            raise ValueError(f"Expected batch_size to be an int in [1, len(data) = {len(data)}], actual {batch_size!r}")
        self.data, self.batch_size = data, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_start = self.generator.get_state()
        self._order = torch.randperm(len(data), generator=self.generator)
        self._position = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._position + self.batch_size > len(self.data):
            self._epoch_start = self.generator.get_state()
            self._order = torch.randperm(len(self.data), generator=self.generator)
            self._position = 0
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return self.data[index.to(self.data.device)]

    def state_dict(self):
        """The generator's state at the start of this epoch and the position in the epoch."""
        return {"epoch_start": self._epoch_start.clone(), "position": self._position}

    def load_state_dict(self, state):
        """Continue from :meth:`state_dict`'s output."""
        self.generator.set_state(state["epoch_start"])
        self._epoch_start = self.generator.get_state()
        self._order = torch.randperm(len(self.data), generator=self.generator)
        self._position = int(state["position"])


# -- random number generators ------------------------------------------------------------------
def rng_state():
    """The states of torch's (CPU and, once initialized, CUDA), NumPy's and Python's global
    random number generators, as tensors, numbers and lists."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state):
    """Restore :func:`rng_state`'s output."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the training state ------------------------------------------------------------------------
_CONSTRAINTS = {
    name: c for name in dir(constraints) if isinstance(c := getattr(constraints, name), constraints.Constraint)
}


def _constraint_name(name, constraint):
    if isinstance(constraint, type(constraints.real)):
        return "real"
    for key, known in _CONSTRAINTS.items():
        if known is constraint:
            return key
    raise ValueError(
        f"Expected the param store's constraints among {sorted(_CONSTRAINTS)}, actual {constraint!r} "
        f"for {name!r}: parameterized constraints cannot be saved as plain data"
    )


class TrainingState:
    r"""Everything a training step reads, captured as plain data and restored in place.

    :param dict modules: the networks by their names in Pyro's param store (``"generator"``,
        ``"critic"``, an encoder's name); their state dicts, buffers included, are saved.
    :param optim: a Pyro optimizer (:class:`pyro.optim.PyroOptim`, its learning-rate schedulers,
        :class:`~bayesgan.optim.GroupedOptim`) or a :class:`torch.optim.Optimizer`.
    :param loss: the loss; its step counter and its penalties' call counters are saved (the
        wrapped loss of a :class:`~bayesgan.infer.SAM`).
    :param model: the model SVI runs; the step of a :func:`~bayesgan.handlers.relax` wrapper is
        saved.
    :param ema: an :class:`~bayesgan.ema.EMA`.
    :param batches: a :class:`Minibatches` (anything with ``state_dict``/``load_state_dict``).
    :param dict config: the run's configuration (plain data), saved as it is.
    :param bool param_store: also save Pyro's param store (its parameters that are not in
        ``modules``, e.g. a guide's).

    .. note:: Restore into freshly built objects of the same configuration, before the first
        step. The Pyro optimizer then takes its saved per-parameter state (and scheduler) at once
        for every parameter it had seen, not when the parameter is next stepped, so a scheduler
        keeps counting the steps of a player that the critic steps leave alone.
    """

    def __init__(self, *, modules, optim=None, loss=None, model=None, ema=None, batches=None, config=None,
                 param_store=True):
        if not isinstance(modules, dict) or not all(isinstance(m, torch.nn.Module) for m in modules.values()):
            raise ValueError(f"Expected modules to be a dict of name -> torch.nn.Module, actual {modules!r:.80}")
        modules = {name: unwrap(m) for name, m in modules.items()}  # no DDP "module." prefix
        self.modules, self.optim, self.loss, self.model = modules, optim, loss, model
        self.ema, self.batches, self.config, self.param_store = ema, batches, config, param_store

    def _counters(self):
        if self.loss is None:
            return []
        return _counters(getattr(self.loss, "base", self.loss), self.model)

    def capture(self, step):
        """The state after ``step`` completed steps, as a dict of plain data."""
        state = {"step": int(step), "config": self.config,
                 "modules": {name: m.state_dict() for name, m in self.modules.items()},
                 "counters": [int(value) for _, _, value in self._counters()], "rng": rng_state()}
        if self.param_store:
            state["param_store"] = _store_state(self.modules)
        if self.optim is not None:
            state["optim"] = self.optim.get_state() if hasattr(self.optim, "get_state") else self.optim.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.batches is not None:
            state["batches"] = self.batches.state_dict()
        return state

    def restore(self, state):
        """Load ``state`` (from :meth:`capture`) into the objects; return its step."""
        for name, module in self.modules.items():
            _check_prefix(name, state["modules"][name], module)
            module.load_state_dict(state["modules"][name])
        if "param_store" in state:
            _set_store_state(state["param_store"])
        if self.optim is not None:
            self._restore_optim(state["optim"])
        if self.ema is not None:
            self._restore_ema(state["ema"])
        counters = self._counters()
        if len(counters) != len(state["counters"]):
            raise CheckpointError(
                f"Expected {len(counters)} step counters (loss, penalties, relaxation) as in this run, "
                f"actual {len(state['counters'])} in the checkpoint: the loss differs"
            )
        _set_counters([(obj, attr, value) for (obj, attr, _), value in zip(counters, state["counters"])])
        if self.batches is not None:
            self.batches.load_state_dict(state["batches"])
        set_rng_state(state["rng"])
        return state["step"]

    def _restore_optim(self, optim_state):
        if not hasattr(self.optim, "set_state"):
            self.optim.load_state_dict(optim_state)
            return
        self.optim.set_state(optim_state)
        store = pyro.get_param_store()
        for name, module in self.modules.items():
            pyro.module(name, module)
        params = dict(store.named_parameters())
        seen = [params[name] for name in optim_state if name in params]
        grads = [(p, p.grad) for p in seen]
        try:
            for p in seen:
                p.grad = None
            self.optim(seen)  # adopt them now: the state loads, no parameter moves without a gradient
        finally:
            for p, grad in grads:
                p.grad = grad

    def _restore_ema(self, ema_state):
        devices = {k: v.device for k, v in self.ema.module.state_dict().items()}
        self.ema.load_state_dict(ema_state)
        self.ema.shadow = {k: v.to(devices.get(k, v.device)) for k, v in self.ema.shadow.items()}


def _check_prefix(name, saved, module):
    keys = list(saved)
    if keys and all(k.startswith("module.") for k in keys) and not any(k.startswith("module.") for k in module.state_dict()):
        raise CheckpointError(
            f"Expected the state dict of {name!r} saved from the plain module, actual names with the "
            f"'module.' prefix of a DistributedDataParallel wrapper ({keys[0]!r}); save "
            f"bayesgan.distributed.unwrap(module).state_dict(), or strip the prefix with "
            f"torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state, 'module.')"
        )


def _store_state(modules):
    """Pyro's param store as plain data, without the modules' parameters (saved with them)."""
    store = pyro.get_param_store()
    in_modules = {id(p) for m in modules.values() for p in m.parameters()}
    found = store.get_state()
    params = {name: p.detach() for name, p in found["params"].items() if id(p) not in in_modules}
    names = {name: _constraint_name(name, found["constraints"][name]) for name in params}
    return {"params": params, "constraints": names}


def _set_store_state(saved):
    store = pyro.get_param_store()
    current = dict(store.named_parameters())
    new = {}
    with torch.no_grad():
        for name, value in saved["params"].items():
            if name in current:
                current[name].copy_(value)
            else:
                new[name] = value.clone().requires_grad_()
    if new:
        store.set_state({"params": new, "constraints": {n: _CONSTRAINTS[saved["constraints"][n]] for n in new}})
