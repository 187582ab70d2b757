"""Drop-in Pyro optimizers that step all parameters with one torch optimizer.

:class:`pyro.optim.PyroOptim` keeps one torch optimizer per parameter tensor and calls ``.step()``
on each of them, so the Python overhead of a step grows with the number of tensors (two 3-layer
MLPs: 12 optimizers). :class:`GroupedOptim` keeps a single torch optimizer whose parameter groups
collect the parameters with equal arguments, and uses the multi-tensor (``foreach``) kernels
where they give the same numbers as the per-tensor ones. Updates, per-parameter arguments,
gradient clipping and saved state are those of the Pyro optimizer.
"""

import pyro
import torch
from pyro.optim import PyroOptim
from pyro.params.param_store import module_from_param_with_module_name, normalize_param_name, user_param_name

__all__ = ["Adam", "GroupedOptim", "RMSprop", "SGD"]

_CLIP_KEYS = ("clip_norm", "clip_value")

# Optimizers whose multi-tensor (foreach) implementation was checked to give bit-identical
# parameters to the per-tensor one on CPU, in float32 and float64 (torch 2.13). NAdam, RAdam,
# ASGD and Adafactor differ in the last bits (or more), so they keep torch's default.
_FOREACH_EXACT = tuple(
    getattr(torch.optim, name)
    for name in ("Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "RMSprop", "Rprop", "SGD")
    if hasattr(torch.optim, name)
)


def _same(a, b):
    """Whether two hyperparameter values may share a parameter group (tensors only if identical)."""
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, torch.Tensor):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # e.g. an array-valued hyperparameter
        return False


def _same_args(a, b):
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def _hyper(group):
    return {k: v for k, v in group.items() if k not in ("params", "param_names")}


def _clone_state(state):
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


class GroupedOptim(PyroOptim):
    r"""A :class:`pyro.optim.PyroOptim` that steps every parameter with one torch optimizer.

    Parameters are added when first seen, as with :class:`~pyro.optim.PyroOptim`; those whose
    arguments (``optim_args``, or the dict its callable returns for them) are equal share one
    parameter group of a single ``optim_constructor`` instance, so a step is one ``.step()`` call
    instead of one per tensor. For the optimizers whose multi-tensor kernels give bit-identical
    results (Adam, AdamW, Adamax, Adadelta, Adagrad, RMSprop, Rprop, SGD) ``foreach=True`` is
    used unless ``optim_args`` sets ``foreach``, ``fused``, ``capturable`` or ``differentiable``,
    or holds a tensor.

    A call ``optim(params)`` steps exactly the parameters in ``params``: the others it manages do
    not move, even when their gradient is a zero tensor (their ``.grad`` is set to ``None`` for
    the step and then restored). Parameters in ``params`` whose gradient is ``None`` are skipped,
    as torch does. Each parameter keeps its own optimizer state (Adam's step count included), so
    the updates equal those of :class:`pyro.optim.PyroOptim` with the same arguments, bit for bit
    on CPU in float32 and float64, also when some parameters are stepped on some calls only (not
    checked on GPUs, where Pyro's per-tensor optimizers already use the foreach kernels).

    :meth:`get_state` returns the same format as :class:`~pyro.optim.PyroOptim`: a dict from
    param-store name to the ``state_dict()`` of a one-parameter torch optimizer, so states can be
    exchanged with Pyro's optimizers; :meth:`save` and :meth:`load` write and read it.

    .. note:: Unlike :class:`~pyro.optim.PyroOptim`, :meth:`set_state` also applies to
        parameters already being optimized (Pyro only applies it to parameters not yet seen). A
        ``closure`` passed to a call is evaluated once per call, not once per parameter.
        Learning-rate schedulers (:class:`pyro.optim.PyroLRScheduler`) are not supported.

    :param optim_constructor: a :class:`torch.optim.Optimizer` subclass, or a callable
        ``(params, **optim_args) -> torch.optim.Optimizer`` that accepts parameter groups.
    :param optim_args: a dict of keyword arguments of ``optim_constructor``, or a callable that
        returns one per parameter: called with the parameter's name in
        :meth:`torch.nn.Module.named_parameters` form (``"critic.0.weight"``) if it takes one
        argument, or with ``(module_name, param_name)`` (``("critic", "0.weight")``) if it takes
        two, exactly as :class:`~pyro.optim.PyroOptim` calls it.
    :param clip_args: ``None``, a dict with ``clip_norm`` and/or ``clip_value``, or a callable
        ``(module_name, param_name) -> dict``; each parameter's gradient is clipped on its own
        (:func:`torch.nn.utils.clip_grad_norm_` per tensor), as in :class:`~pyro.optim.PyroOptim`.
    :raises ValueError: if an argument has the wrong type or a clip key is unknown.

    >>> import torch, pyro
    >>> from bayesgan.optim import GroupedOptim
    >>> pyro.clear_param_store()
    >>> net = torch.nn.Linear(2, 1)
    >>> pyro.module("net", net)  # doctest: +ELLIPSIS
    Linear(...)
    >>> optim = GroupedOptim(torch.optim.Adam, lambda name: {"lr": 0.1 if name.endswith("bias") else 0.01})
    >>> net(torch.ones(4, 2)).sum().backward()
    >>> optim(set(net.parameters()))
    >>> [group["lr"] for group in optim.optimizer.param_groups]
    [0.1, 0.01]
    >>> sorted(optim.get_state())
    ['net$$$bias', 'net$$$weight']
    >>> pyro.clear_param_store()
    """

    def __init__(self, optim_constructor, optim_args, clip_args=None):
        if isinstance(optim_constructor, torch.optim.Optimizer) or not callable(optim_constructor):
            raise ValueError(
                f"Expected optim_constructor to be a torch.optim.Optimizer class or a callable "
                f"returning one, actual {type(optim_constructor).__name__}"
            )
        if not (isinstance(optim_args, dict) or callable(optim_args)):
            raise ValueError(
                f"Expected optim_args to be a dict or a callable returning one, actual {type(optim_args).__name__}"
            )
        if not (clip_args is None or isinstance(clip_args, dict) or callable(clip_args)):
            raise ValueError(
                f"Expected clip_args to be None, a dict or a callable returning one, actual "
                f"{type(clip_args).__name__}"
            )
        if isinstance(clip_args, dict):
            self._check_clip_args(clip_args)
        super().__init__(optim_constructor, optim_args, clip_args)
        #: the torch optimizer holding every parameter (``None`` until the first call).
        self.optimizer = None
        self._clip = {}  # param -> its clip args or None, in the order the params were adopted
        self._any_clip = False
        self._foreach = optim_constructor in _FOREACH_EXACT  # exactly these classes, not subclasses

    # -- stepping ----------------------------------------------------------------------------
    def __call__(self, params, *args, **kwargs):
        """Step the parameters in ``params`` (and only those), adopting any not seen before.

        :param params: an iterable of parameter tensors (``SVI`` passes a set).
        :param args: passed to the torch optimizer's ``step`` (e.g. a closure).
        """
        given = params if isinstance(params, (set, frozenset)) else set(params)
        if not given:
            return
        clip = self._clip
        new = [p for p in given if p not in clip]
        if new:
            self._adopt(new)
        if self._any_clip:
            for p in given:
                if clip[p] is not None:
                    self._clip_grad(p, **clip[p])
        hidden = ()
        if len(given) != len(clip):  # some managed parameters are not to be stepped
            hidden = [(p, p.grad) for p in clip if p.grad is not None and p not in given]
        try:
            for p, _ in hidden:
                p.grad = None
            self.optimizer.step(*args, **kwargs)
        finally:
            for p, grad in hidden:
                p.grad = grad

    # -- state ---------------------------------------------------------------------------------
    def get_state(self):
        """The optimizer state as ``{param_name: state_dict}``, each ``state_dict`` that of a
        torch optimizer holding that parameter alone (the format of
        :meth:`pyro.optim.PyroOptim.get_state`). States given to :meth:`set_state` for
        parameters not seen yet are included as given."""
        state_dict = {}
        if self.optimizer is not None:
            store = pyro.get_param_store()
            for group in self.optimizer.param_groups:
                hyper = _hyper(group)
                for p in group["params"]:
                    name = store.param_name(p)
                    if name is None:  # not in the param store (any more): nothing to key it by
                        continue
                    state = self.optimizer.state.get(p)
                    state_dict[name] = {
                        "state": {0: dict(state)} if state else {},
                        "param_groups": [{**hyper, "params": [0]}],
                    }
        for name, state in self._state_waiting_to_be_consumed.items():
            state_dict.setdefault(name, state)
        return state_dict

    def set_state(self, state_dict):
        """Set the state from :meth:`get_state` (or :meth:`pyro.optim.PyroOptim.get_state`).

        Parameters already being optimized take their state (and arguments) now, the others
        when first seen. The tensors are copied, so ``state_dict`` is not modified by later steps.
        """
        if not isinstance(state_dict, dict):
            raise ValueError(
                f"Expected a dict of per-parameter states as returned by get_state(), actual "
                f"{type(state_dict).__name__}"
            )
        self._state_waiting_to_be_consumed.update(state_dict)
        if self.optimizer is None:
            return
        store = pyro.get_param_store()
        readopt = [p for p in self._clip if store.param_name(p) in state_dict]
        for p in readopt:
            self._release(p)
        if readopt:
            self._adopt(readopt)

    # -- internals -----------------------------------------------------------------------------
    def _adopt(self, params):
        """Add parameters to the torch optimizer, in the order of their names."""
        store = pyro.get_param_store()
        named = [(store.param_name(p), p) for p in params]
        named.sort(key=lambda np: (np[0] is None, np[0] or ""))
        for name, p in named:
            user_args = self._optim_args_for(name)
            # the same construction as PyroOptim's per-parameter optimizer: same defaults, same checks
            single = self.pt_optim_constructor([p], **user_args)
            if not isinstance(single, torch.optim.Optimizer):
                raise ValueError(
                    f"Expected optim_constructor to return a torch.optim.Optimizer, actual "
                    f"{type(single).__name__}"
                )
            waiting = self._state_waiting_to_be_consumed.pop(name, None) if name is not None else None
            if waiting is not None:
                single.load_state_dict(waiting)
            group = single.param_groups[0]
            if self._foreach and "foreach" not in user_args and self._foreach_ok(group):
                group["foreach"] = True
            state = _clone_state(single.state[p]) if p in single.state else None
            self._attach(p, single, group, state)
            self._clip[p] = self._clip_args_for(name)
            self._any_clip = self._any_clip or self._clip[p] is not None

    def _attach(self, p, single, group, state):
        if self.optimizer is None:
            self.optimizer = single
        else:
            hyper = _hyper(group)
            for existing in self.optimizer.param_groups:
                if _same_args(_hyper(existing), hyper):
                    existing["params"].append(p)
                    break
            else:
                self.optimizer.add_param_group({**hyper, "params": [p]})
        self.optimizer.state.pop(p, None)
        if state is not None:
            self.optimizer.state[p] = state

    def _release(self, p):
        groups = self.optimizer.param_groups
        for i, group in enumerate(groups):
            if any(q is p for q in group["params"]):
                group["params"] = [q for q in group["params"] if q is not p]
                if not group["params"] and len(groups) > 1:
                    del groups[i]  # by index: list.remove would compare the groups' tensors
                break
        self.optimizer.state.pop(p, None)
        del self._clip[p]

    @staticmethod
    def _foreach_ok(group):
        if any(group.get(k) for k in ("fused", "capturable", "differentiable")):
            return False
        return not any(isinstance(v, torch.Tensor) for v in _hyper(group).values())

    def _optim_args_for(self, name):
        if not callable(self.pt_optim_args):
            return self.pt_optim_args
        if name is None:
            raise ValueError(
                "Expected the parameters to be in Pyro's param store when optim_args is a "
                "callable of their names, actual a parameter without a name"
            )
        if self.pt_optim_args_argc == 1:
            args = self.pt_optim_args(normalize_param_name(name))
        else:
            args = self.pt_optim_args(module_from_param_with_module_name(name), user_param_name(name))
        if not isinstance(args, dict):
            raise ValueError(f"Expected optim_args({name!r}) to return a dict, actual {type(args).__name__}")
        return args

    def _clip_args_for(self, name):
        if callable(self.pt_clip_args):
            if name is None:
                raise ValueError(
                    "Expected the parameters to be in Pyro's param store when clip_args is a "
                    "callable of their names, actual a parameter without a name"
                )
            args = self.pt_clip_args(module_from_param_with_module_name(name), user_param_name(name))
            if not isinstance(args, dict):
                raise ValueError(f"Expected clip_args({name!r}) to return a dict, actual {type(args).__name__}")
            self._check_clip_args(args)
        else:
            args = self.pt_clip_args
        return args or None

    @staticmethod
    def _check_clip_args(args):
        unknown = sorted(set(args) - set(_CLIP_KEYS))
        if unknown:
            raise ValueError(f"Expected clip_args keys among {_CLIP_KEYS}, actual unknown keys {unknown}")

    def __repr__(self):
        name = getattr(self.pt_optim_constructor, "__name__", repr(self.pt_optim_constructor))
        groups = 0 if self.optimizer is None else len(self.optimizer.param_groups)
        return f"GroupedOptim({name}, params={len(self._clip)}, groups={groups})"


def _convenience(constructor):
    def make(optim_args, clip_args=None):
        return GroupedOptim(constructor, optim_args, clip_args)

    name = constructor.__name__
    make.__name__ = make.__qualname__ = name
    make.__doc__ = f"""Wraps :class:`torch.optim.{name}` with :class:`GroupedOptim`; a drop-in
    replacement for :class:`pyro.optim.{name}` (same arguments, same updates).

    :param optim_args: a dict of :class:`torch.optim.{name}` arguments, or a callable of the
        parameter name returning one (see :class:`GroupedOptim`).
    :param clip_args: ``None``, or a dict (or callable returning one) with ``clip_norm`` and/or
        ``clip_value``.
    :rtype: GroupedOptim
    """
    return make


Adam = _convenience(torch.optim.Adam)
RMSprop = _convenience(torch.optim.RMSprop)
SGD = _convenience(torch.optim.SGD)

Adam.__doc__ += """
    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer import SVI
    >>> from bayesgan.infer import FGANLoss
    >>> from bayesgan.optim import Adam
    >>> pyro.clear_param_store()
    >>> generator = torch.nn.Linear(1, 1)
    >>> def model(x):
    ...     pyro.module("generator", generator)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    ...         pyro.sample("x", dist.Delta(generator(z), event_dim=1), obs=x)
    >>> critic = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> optim = Adam(lambda module, name: {"lr": 4e-4 if module == "critic" else 1e-4, "betas": (0.5, 0.999)})
    >>> svi = SVI(model, lambda x: None, optim, loss=FGANLoss("js", critic))
    >>> critic_loss, generator_loss = svi.step(torch.randn(8, 1) + 3.0)
    >>> optim
    GroupedOptim(Adam, params=6, groups=2)
    >>> pyro.clear_param_store()
"""
