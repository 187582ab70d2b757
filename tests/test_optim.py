"""bayesgan.optim.GroupedOptim: the same updates as pyro.optim's per-parameter optimizers."""

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
import torch.nn as nn
from pyro.infer import SVI

import bayesgan.optim as bo
from bayesgan.infer import FGANLoss

pytestmark = pytest.mark.usefixtures("float64", "one_thread")

BETAS = (0.5, 0.999)


def _nets(seed=0):
    torch.manual_seed(seed)
    generator = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    critic = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    return generator, critic


def _svi(generator, critic, optim, critic_steps=1):
    def model(x):
        pyro.module("generator", generator)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Delta(generator(z), event_dim=1), obs=x)

    return SVI(model, lambda x: None, optim, loss=FGANLoss("gan", critic, critic_steps=critic_steps))


def _snapshot(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _data():
    return torch.randn(32, 2, generator=torch.Generator().manual_seed(7)) * 0.5 + 1.0


def _run(optim, steps=12, critic_steps=1):
    """Train a fresh pair for ``steps`` steps; return the parameters after every step."""
    pyro.clear_param_store()
    generator, critic = _nets()
    svi = _svi(generator, critic, optim, critic_steps)
    x = _data()
    pyro.set_rng_seed(1)
    history = []
    for _ in range(steps):
        svi.step(x)
        history.append((_snapshot(generator), _snapshot(critic)))
    return history


def _assert_identical(a, b):
    assert len(a) == len(b)
    for step, ((ga, ca), (gb, cb)) in enumerate(zip(a, b)):
        for x, y in zip(ga + ca, gb + cb):
            assert x.dtype == y.dtype
            assert torch.equal(x, y), f"step {step}: max |diff| {(x - y).abs().max().item()}"


def _per_module_lr(module, name):
    return {"lr": 4e-3 if module == "critic" else 1e-3, "betas": BETAS}


def _per_name_lr(name):
    return {"lr": 2e-3 if name.startswith("critic") and name.endswith("bias") else 1e-3, "betas": BETAS}


# -- trajectories equal to pyro.optim --------------------------------------------------------


@pytest.mark.parametrize(
    "args", [{"lr": 1e-2, "betas": BETAS}, _per_module_lr, _per_name_lr], ids=["dict", "module-callable", "name-callable"]
)
@pytest.mark.parametrize("critic_steps", [1, 3])
def test_adam_matches_pyro_bitwise(args, critic_steps):
    expected = _run(pyro.optim.Adam(args), critic_steps=critic_steps)
    optim = bo.Adam(args)
    actual = _run(optim, critic_steps=critic_steps)
    _assert_identical(actual, expected)
    groups = optim.optimizer.param_groups
    assert len(groups) == (1 if isinstance(args, dict) else 2)
    assert all(g["foreach"] is True for g in groups)
    assert sum(len(g["params"]) for g in groups) == 12


def test_adam_matches_pyro_bitwise_float32():
    torch.set_default_dtype(torch.float32)  # the float64 fixture restores the default afterwards
    expected = _run(pyro.optim.Adam(_per_module_lr), critic_steps=2)
    actual = _run(bo.Adam(_per_module_lr), critic_steps=2)
    assert actual[0][0][0].dtype == torch.float32
    _assert_identical(actual, expected)


def test_generator_frozen_on_critic_only_steps():
    history = _run(bo.Adam({"lr": 1e-2, "betas": BETAS}), steps=9, critic_steps=3)
    generator0, critic0 = _nets()
    previous = (_snapshot(generator0), _snapshot(critic0))
    for step, (gen, crit) in enumerate(history):
        generator_stepped = (step + 1) % 3 == 0
        for new, old in zip(gen, previous[0]):
            assert torch.equal(new, old) != generator_stepped, f"step {step}"
        assert not any(torch.equal(new, old) for new, old in zip(crit, previous[1]))
        previous = (gen, crit)


@pytest.mark.parametrize(
    "ours, theirs, args",
    [
        (bo.RMSprop, pyro.optim.RMSprop, {"lr": 1e-3, "alpha": 0.9, "momentum": 0.5}),
        (bo.RMSprop, pyro.optim.RMSprop, {"lr": 1e-3, "centered": True, "weight_decay": 1e-2}),
        (bo.SGD, pyro.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
        (bo.SGD, pyro.optim.SGD, {"lr": 1e-2}),
    ],
)
def test_rmsprop_and_sgd_match_pyro_bitwise(ours, theirs, args):
    _assert_identical(_run(ours(args), critic_steps=2), _run(theirs(args), critic_steps=2))


def test_generic_wrapper_without_foreach_matches_pyro():
    """NAdam's foreach kernels differ in the last bits, so it keeps torch's default kernels."""
    args = {"lr": 1e-2, "betas": BETAS}
    optim = bo.GroupedOptim(torch.optim.NAdam, args)
    _assert_identical(_run(optim, critic_steps=2), _run(pyro.optim.NAdam(args), critic_steps=2))
    assert optim.optimizer.param_groups[0]["foreach"] is None


def test_user_foreach_is_respected():
    optim = bo.Adam({"lr": 1e-2, "foreach": False})
    _assert_identical(_run(optim, steps=4), _run(pyro.optim.Adam({"lr": 1e-2}), steps=4))
    assert optim.optimizer.param_groups[0]["foreach"] is False


def test_fused_opt_in_is_close_to_pyro():
    """``fused=True`` (one CPU kernel per tensor, much faster) is passed through; it is not
    bit-identical to the per-tensor kernels, only close."""
    args = {"lr": 1e-2, "betas": BETAS}
    optim = bo.Adam({**args, "fused": True})
    actual, expected = _run(optim, critic_steps=2), _run(pyro.optim.Adam(args), critic_steps=2)
    assert optim.optimizer.param_groups[0]["fused"] is True and optim.optimizer.param_groups[0]["foreach"] is None
    for (ga, ca), (gb, cb) in zip(actual, expected):
        for x, y in zip(ga + ca, gb + cb):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "clip_args",
    [
        {"clip_norm": 0.05},
        {"clip_value": 0.01, "clip_norm": 1.0},
        lambda module, name: {"clip_norm": 0.02} if module == "critic" else {},
    ],
    ids=["norm", "value+norm", "callable"],
)
def test_clip_args_match_pyro(clip_args):
    args = {"lr": 1e-2, "betas": BETAS}
    expected = _run(pyro.optim.Adam(args, clip_args), critic_steps=2)
    _assert_identical(_run(bo.Adam(args, clip_args), critic_steps=2), expected)
    assert not _identical(expected, _run(pyro.optim.Adam(args), critic_steps=2))  # clipping mattered


def _identical(a, b):
    try:
        _assert_identical(a, b)
    except AssertionError:
        return False
    return True


# -- stepping only the given parameters ------------------------------------------------------


def _two_params():
    a = pyro.param("a", torch.ones(3))
    b = pyro.param("b", torch.ones(2))
    return a.unconstrained(), b.unconstrained()


def test_unlisted_params_do_not_move_even_with_zero_grads():
    a, b = _two_params()
    optim = bo.Adam({"lr": 0.1})
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    optim([a, b])
    b.grad = torch.zeros(2)  # what pyro.infer.util.zero_grads leaves
    a.grad = torch.ones(3)
    b_before, b_grad = b.detach().clone(), b.grad
    state_before = {k: v.clone() for k, v in optim.optimizer.state[b].items()}
    optim({a})
    assert torch.equal(b, b_before)
    assert b.grad is b_grad  # restored
    assert all(torch.equal(optim.optimizer.state[b][k], v) for k, v in state_before.items())
    # the check is not vacuous: a plain grouped torch Adam would move b
    plain = torch.optim.Adam([b], lr=0.1)
    plain.state[b] = {k: v.clone() for k, v in state_before.items()}
    plain.step()
    assert not torch.equal(b, b_before)


def test_params_without_grad_are_skipped():
    a, b = _two_params()
    optim = bo.SGD({"lr": 0.5, "momentum": 0.9})
    a.grad = torch.ones(3)
    optim([a, b])
    assert torch.equal(b, torch.ones(2))
    assert torch.equal(a, torch.full((3,), 0.5))
    assert b not in optim.optimizer.state


def test_params_seen_later_join_the_group():
    a, b = _two_params()
    optim = bo.Adam({"lr": 0.1})
    a.grad = torch.ones(3)
    optim([a])
    b.grad = torch.ones(2)
    optim([a, b])
    assert len(optim.optimizer.param_groups) == 1
    assert float(optim.optimizer.state[a]["step"]) == 2 and float(optim.optimizer.state[b]["step"]) == 1
    assert repr(optim) == "GroupedOptim(Adam, params=2, groups=1)"


# -- state ---------------------------------------------------------------------------------------


def _train_resumable(optim_factory, total, stop, tmp_path):
    """Train ``total`` steps; with ``stop``, rebuild everything after ``stop`` steps from saved state."""
    pyro.clear_param_store()
    generator, critic = _nets()
    optim = optim_factory[0]()
    svi = _svi(generator, critic, optim, critic_steps=2)
    x = _data()
    pyro.set_rng_seed(1)
    history = []
    for step in range(total):
        if step == stop:
            path = tmp_path / "optim.pt"
            optim.save(path)
            weights = (generator.state_dict(), critic.state_dict())
            rng, loss_step = torch.get_rng_state(), svi.loss_and_grads.__self__.step
            pyro.clear_param_store()
            generator, critic = _nets(seed=123)
            generator.load_state_dict(weights[0])
            critic.load_state_dict(weights[1])
            optim = optim_factory[1]()
            optim.load(path)
            svi = _svi(generator, critic, optim, critic_steps=2)
            svi.loss_and_grads.__self__.step = loss_step  # the critic_steps phase
            torch.set_rng_state(rng)
        svi.step(x)
        history.append((_snapshot(generator), _snapshot(critic)))
    return history


@pytest.mark.parametrize("args", [{"lr": 1e-2, "betas": BETAS}, _per_module_lr], ids=["dict", "callable"])
def test_save_load_resumes_bitwise(args, tmp_path):
    make = lambda: bo.Adam(args)  # noqa: E731
    uninterrupted = _train_resumable((make, make), 12, None, tmp_path)
    resumed = _train_resumable((make, make), 12, 5, tmp_path)
    _assert_identical(resumed, uninterrupted)


@pytest.mark.parametrize("direction", ["pyro->bayesgan", "bayesgan->pyro"])
def test_state_is_exchangeable_with_pyro(direction, tmp_path):
    ours, theirs = (lambda: bo.Adam(_per_module_lr)), (lambda: pyro.optim.Adam(_per_module_lr))
    factories = (theirs, ours) if direction == "pyro->bayesgan" else (ours, theirs)
    uninterrupted = _train_resumable((theirs, theirs), 10, None, tmp_path)
    _assert_identical(_train_resumable(factories, 10, 5, tmp_path), uninterrupted)


def test_get_state_format_matches_pyro():
    ours, theirs = bo.Adam(_per_module_lr), pyro.optim.Adam(_per_module_lr)
    _run(theirs, steps=3, critic_steps=2)
    expected = theirs.get_state()
    _run(ours, steps=3, critic_steps=2)
    actual = ours.get_state()
    assert sorted(actual) == sorted(expected) and len(actual) == 12
    for name, state in expected.items():
        assert actual[name].keys() == state.keys() == {"state", "param_groups"}
        assert actual[name]["state"].keys() == state["state"].keys() == {0}
        mine, theirs_ = actual[name]["state"][0], state["state"][0]
        assert mine.keys() == theirs_.keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert all(torch.equal(mine[k], theirs_[k]) for k in mine)
        assert dict(actual[name]["param_groups"][0], foreach=None) == state["param_groups"][0]


def test_set_state_applies_to_managed_params_and_copies():
    optim = bo.Adam({"lr": 1e-2, "betas": BETAS})
    _run(optim, steps=3)
    saved = optim.get_state()
    pyro.clear_param_store()  # the parameters of that run are now nameless: the states wait
    optim.set_state(saved)
    generator, critic = _nets()
    svi = _svi(generator, critic, optim)
    svi.step(_data())  # the new parameters take the waiting states, keyed by name
    store = pyro.get_param_store()
    for name in saved:
        assert float(optim.optimizer.state[store.get_param(name).unconstrained()]["step"]) == 4
        assert float(saved[name]["state"][0]["step"]) == 3  # copied, not aliased
    optim.set_state(saved)  # managed parameters take a new state at once
    for name in saved:
        assert float(optim.optimizer.state[store.get_param(name).unconstrained()]["step"]) == 3
    assert sum(len(g["params"]) for g in optim.optimizer.param_groups) == 24  # 12 stale + 12 live
    assert len(optim.get_state()) == 12


def test_set_state_moves_a_param_to_the_group_of_its_saved_args():
    a, b = _two_params()
    optim = bo.Adam({"lr": 0.1})
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    optim([a, b])
    state = optim.get_state()
    state["b"]["param_groups"][0]["lr"] = 0.5
    optim.set_state({"b": state["b"]})
    groups = optim.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.1, 0.5]
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert groups[0]["params"][0] is a and groups[1]["params"][0] is b
    assert float(optim.optimizer.state[b]["step"]) == 1
    state["b"]["param_groups"][0]["lr"] = 0.1  # back: b's emptied group goes away
    optim.set_state({"b": state["b"]})
    assert [(g["lr"], len(g["params"])) for g in optim.optimizer.param_groups] == [(0.1, 2)]
    assert optim.optimizer.param_groups[0]["params"][1] is b


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "constructor, optim_args, clip_args, match",
    [
        ("adam", {}, None, "optim_constructor"),
        (torch.optim.Adam([torch.zeros(1, requires_grad=True)]), {}, None, "optim_constructor"),
        (torch.optim.Adam, [("lr", 0.1)], None, "optim_args to be a dict"),
        (torch.optim.Adam, {}, 1.0, "clip_args to be None"),
        (torch.optim.Adam, {}, {"max_norm": 1.0}, "unknown keys \\['max_norm'\\]"),
    ],
)
def test_constructor_errors(constructor, optim_args, clip_args, match):
    with pytest.raises(ValueError, match=f"Expected .*{match}"):
        bo.GroupedOptim(constructor, optim_args, clip_args)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: bo.Adam(lambda name: [("lr", 0.1)]), "optim_args\\('a'\\) to return a dict, actual list"),
        (lambda: bo.Adam({}, lambda module, name: None), "clip_args\\('a'\\) to return a dict, actual NoneType"),
        (lambda: bo.Adam({}, lambda module, name: {"norm": 1.0}), "unknown keys \\['norm'\\]"),
        (lambda: bo.GroupedOptim(lambda params, **kw: object(), {}), "return a torch.optim.Optimizer, actual object"),
    ],
)
def test_first_step_errors(make, match):
    a, _ = _two_params()
    a.grad = torch.ones(3)
    optim = make()
    with pytest.raises(ValueError, match=f"Expected .*{match}"):
        optim([a])


def test_unnamed_param_with_callable_args():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="Expected the parameters to be in Pyro's param store"):
        bo.Adam(lambda name: {"lr": 0.1})([p])
    q = p.detach().clone().requires_grad_()
    q.grad = p.grad.clone()
    bo.Adam({"lr": 0.1})([p])  # dict args need no name
    torch.optim.Adam([q], lr=0.1).step()
    assert torch.equal(p, q) and not torch.equal(p, torch.zeros(2))


def test_set_state_error():
    with pytest.raises(ValueError, match="Expected a dict of per-parameter states .* actual list"):
        bo.Adam({}).set_state([])
