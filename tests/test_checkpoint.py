"""bayesgan.checkpoint: atomic files with a digest, the fallback past a truncated or corrupt file,
the refusal of pickled code, and a training state that resumes bit for bit in process (the
kill-and-resume test of the command is in test_cli.py)."""

import os
import random

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.infer import SVI

from bayesgan import datasets
from bayesgan.checkpoint import (CheckpointError, CheckpointWarning, Minibatches, TrainingState,
                                 UnsafeCheckpointError, checkpoint_paths, load_checkpoint, load_latest,
                                 rng_state, save_checkpoint, set_rng_state)
from bayesgan.ema import EMA
from bayesgan.handlers import relax
from bayesgan.infer import SAM, WassersteinLoss
from bayesgan.penalties import GradientPenalty, Lazy, R1

pytestmark = pytest.mark.usefixtures("float64")


def _state(step, value=1.0):
    return {"step": step, "config": {"lr": 0.1, "betas": [0.5, 0.999]}, "weights": torch.full((3,), value)}


# -- files --------------------------------------------------------------------------------------
def test_save_writes_atomically_and_keeps_the_last_k(tmp_path):
    (tmp_path / ".ckpt-00000035.pt.tmp").write_bytes(b"half a file")  # from a killed process
    for step in (10, 20, 30, 40):
        path = save_checkpoint(tmp_path, _state(step, step), keep=2)
        assert path == tmp_path / f"ckpt-{step:08d}.pt"
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt-00000030.pt", "ckpt-00000040.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000030.pt", "ckpt-00000040.pt"]  # no temp file
    raw = torch.load(tmp_path / "ckpt-00000040.pt", weights_only=True)  # plain torch.load reads it
    assert raw["format"] == "bayesgan-checkpoint" and len(raw["sha256"]) == 64
    loaded = load_checkpoint(tmp_path / "ckpt-00000040.pt")
    assert loaded["step"] == 40 and loaded["config"] == {"lr": 0.1, "betas": [0.5, 0.999]}
    assert torch.equal(loaded["weights"], torch.full((3,), 40.0))


def test_checkpoint_paths_sort_by_step_and_ignore_others(tmp_path):
    for name in ("ckpt-00000100.pt", "ckpt-00000020.pt", ".ckpt-00000300.pt.tmp", "notes.txt", "ckpt-1.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["ckpt-00000020.pt", "ckpt-00000100.pt"]
    assert checkpoint_paths(tmp_path / "missing") == []
    assert load_latest(tmp_path / "missing") is None


def test_truncated_newest_falls_back_to_the_previous_with_a_warning(tmp_path):
    save_checkpoint(tmp_path, _state(1, 1.0))
    newest = save_checkpoint(tmp_path, _state(2, 2.0))
    raw = newest.read_bytes()
    newest.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(CheckpointWarning, match="ckpt-00000002.pt"):
        path, state = load_latest(tmp_path)
    assert path.name == "ckpt-00000001.pt" and state["step"] == 1
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(newest)


def test_flipped_byte_fails_the_digest(tmp_path):
    path = save_checkpoint(tmp_path, _state(5, 0.25))
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(torch.full((3,), 0.25).numpy().tobytes())
    raw[at + 3] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256 digest"):
        load_checkpoint(path)


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt-00000001.pt").write_bytes(b"")
    torch.save({"step": 2}, tmp_path / "ckpt-00000002.pt")  # a torch file, not a checkpoint
    with pytest.warns(CheckpointWarning) as record:
        with pytest.raises(CheckpointError, match="actual 2 unreadable: ckpt-00000002.pt, ckpt-00000001.pt"):
            load_latest(tmp_path)
    assert len(record) == 2
    with pytest.raises(CheckpointError, match="Expected a bayesgan-checkpoint file"):
        load_checkpoint(tmp_path / "ckpt-00000002.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "ckpt-00000003.pt")


def test_wrong_version_is_refused(tmp_path):
    path = save_checkpoint(tmp_path, _state(1))
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "version": 99}, path)
    with pytest.raises(CheckpointError, match="Expected checkpoint version 1"):
        load_checkpoint(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "run"
    save_checkpoint(folder, _state(1))
    torch.save({"format": "bayesgan-checkpoint", "step": 2, "x": _Exploit(marker)}, folder / "ckpt-00000002.pt")
    with pytest.raises(UnsafeCheckpointError, match="could execute code"):
        load_checkpoint(folder / "ckpt-00000002.pt")
    with pytest.raises(UnsafeCheckpointError):  # not skipped in silence: someone planted it
        load_latest(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    "state, keep, message",
    [
        ({"step": 1}, 0, "Expected keep to be an int >= 1, actual 0"),
        ({"step": 1}, True, "Expected keep to be an int >= 1, actual True"),
        ({"config": {}}, 1, "Expected a state dict with an int 'step' >= 0, actual None"),
        ({"step": -1}, 1, "Expected a state dict with an int 'step' >= 0, actual -1"),
        ([1], 1, "Expected a state dict with an int 'step' >= 0, actual None"),
    ],
)
def test_save_errors(tmp_path, state, keep, message):
    with pytest.raises(ValueError) as error:
        save_checkpoint(tmp_path, state, keep=keep)
    assert str(error.value) == message


# -- minibatches and random number generators ---------------------------------------------------
def test_minibatches_match_datasets_batches_and_resume():
    data = torch.arange(10.0)[:, None]
    reference = datasets.batches(data, 3, generator=torch.Generator().manual_seed(4))
    it = Minibatches(data, 3, seed=4)
    expected = [next(reference) for _ in range(8)]  # 3 batches an epoch: crosses two epochs
    got = [next(it) for _ in range(4)]
    saved = it.state_dict()
    got += [next(it) for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    again = Minibatches(data, 3, seed=99)
    again.load_state_dict(saved)
    assert all(torch.equal(next(again), b) for b in expected[4:])


@pytest.mark.parametrize(
    "data, batch_size, message",
    [
        ([1.0, 2.0], 1, "Expected a non-empty tensor of data, actual list"),
        (torch.zeros(0, 2), 1, "Expected a non-empty tensor of data, actual Tensor"),
        (torch.zeros(4, 2), 5, "Expected batch_size to be an int in [1, len(data) = 4], actual 5"),
        (torch.zeros(4, 2), 0, "Expected batch_size to be an int in [1, len(data) = 4], actual 0"),
    ],
)
def test_minibatches_errors(data, batch_size, message):
    with pytest.raises(ValueError) as error:
        Minibatches(data, batch_size)
    assert str(error.value) == message


def test_rng_states_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    saved = rng_state()
    path = save_checkpoint(tmp_path, {"step": 0, "rng": saved})
    expected = (torch.rand(3), np.random.standard_normal(3), random.random(), random.gauss(0, 1))
    set_rng_state(load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.standard_normal(3), random.random(), random.gauss(0, 1))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]


# -- the training state -------------------------------------------------------------------------
class _Run:
    """A small run with every stateful piece: BatchNorm buffers, a non-module param store entry
    with a constraint, critic steps, a lazy penalty, a relaxation schedule, SAM, an EMA and a
    learning-rate scheduler."""

    def __init__(self, data):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        self.generator = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                             torch.nn.Linear(8, 2))
        self.critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        penalty = GradientPenalty(1.0) + Lazy(R1(1.0), every=3)
        self.loss = SAM(WassersteinLoss(self.critic, penalty=penalty, critic_steps=3), rho=0.05)
        self.model = relax(self._model, scale=lambda step: 0.1 / (1 + step))
        self.optim = pyro.optim.LambdaLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.01},
                                          "lr_lambda": lambda step: 1.0 / (1 + step)})
        self.ema = EMA(self.generator, decay=0.5)
        self.batches = Minibatches(data, 16, seed=0)
        self.svi = SVI(self.model, lambda x: None, self.optim, loss=self.loss)
        self.state = TrainingState(modules={"generator": self.generator, "critic": self.critic}, optim=self.optim,
                                   loss=self.loss, model=self.model, ema=self.ema, batches=self.batches,
                                   config={"name": "test"})

    def _model(self, x):
        pyro.module("generator", self.generator)
        scale = pyro.param("scale", torch.ones(2), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Delta(self.generator(z) * scale, event_dim=1), obs=x)

    def steps(self, n):
        for _ in range(n):
            self.svi.step(next(self.batches))
            self.optim.step()
            self.ema.update()

    def snapshot(self):
        return {**{f"g.{k}": v.clone() for k, v in self.generator.state_dict().items()},
                **{f"d.{k}": v.clone() for k, v in self.critic.state_dict().items()},
                **{f"ema.{k}": v.clone() for k, v in self.ema.shadow.items()},
                "scale": pyro.param("scale").detach().clone(), "next": next(self.batches), "rng": torch.rand(2)}


def test_training_state_resumes_bit_for_bit(tmp_path):
    data = datasets.fixed_dataset("ring", 64, seed=0, dtype=torch.float64)
    run = _Run(data)
    run.steps(6)  # the next step is a critic step: the generator's scheduler counts it all the same
    save_checkpoint(tmp_path, run.state.capture(step=6))
    run.steps(6)
    expected = run.snapshot()

    resumed = _Run(data)  # fresh objects, a fresh param store
    path, state = load_latest(tmp_path)
    assert resumed.state.restore(state) == 6 and state["config"] == {"name": "test"}
    assert state["param_store"]["constraints"] == {"scale": "positive"}
    assert resumed.loss.base.step == 6 and resumed.model.messenger.step == 6
    resumed.steps(6)
    got = resumed.snapshot()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert any("running_mean" in k for k in expected)


def test_training_state_restores_a_torch_optimizer_and_a_new_param(tmp_path):
    net = torch.nn.Linear(2, 1)
    optim = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(3, 2)).sum().backward()
    optim.step()
    pyro.param("extra", torch.tensor([0.5, 2.0]), constraint=constraints.positive)
    state = TrainingState(modules={"net": net}, optim=optim).capture(step=1)
    pyro.clear_param_store()
    other = torch.nn.Linear(2, 1)
    other_optim = torch.optim.Adam(other.parameters(), lr=0.1)
    assert TrainingState(modules={"net": other}, optim=other_optim).restore(state) == 1
    assert torch.equal(other.weight, net.weight)
    assert torch.equal(other_optim.state_dict()["state"][0]["exp_avg"], optim.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(pyro.param("extra"), torch.tensor([0.5, 2.0]))
    assert pyro.get_param_store()._constraints["extra"] is constraints.positive


def test_training_state_with_a_different_loss_is_refused():
    critic = torch.nn.Linear(2, 1)
    state = TrainingState(modules={}, loss=WassersteinLoss(critic, penalty=Lazy(R1(1.0)))).capture(step=3)
    with pytest.raises(CheckpointError, match="Expected 1 step counters"):
        TrainingState(modules={}, loss=WassersteinLoss(critic)).restore(state)


def test_training_state_errors():
    with pytest.raises(ValueError) as error:
        TrainingState(modules=[torch.nn.Linear(1, 1)])
    assert str(error.value).startswith("Expected modules to be a dict of name -> torch.nn.Module, actual [Linear(")
    pyro.param("bounded", torch.tensor(0.5), constraint=constraints.interval(0.0, 1.0))
    with pytest.raises(ValueError, match="Expected the param store's constraints among .* for 'bounded'"):
        TrainingState(modules={}).capture(step=0)
