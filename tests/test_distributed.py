"""bayesgan.distributed: two processes (torchrun, gloo, CPU) equal one process on the global batch
for an f-GAN, a Wasserstein loss with a gradient penalty and MMD (with and without a critic); the
ranks stay identical; a run killed after a checkpoint and resumed on two processes ends bit for
bit as the uninterrupted one; only rank 0 writes; the misuse that would desynchronize is refused.

The two-process runs are launched once per module (``tests/distributed_workers/gan_worker.py``);
the single-process references run here, with the same functions.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayesgan import distributed
from bayesgan.checkpoint import CheckpointError, TrainingState

pytestmark = pytest.mark.usefixtures("float64")

WORKERS = Path(__file__).parent / "distributed_workers"
TOLERANCE = 1e-6

if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)


def _worker():
    spec = importlib.util.spec_from_file_location("gan_worker", WORKERS / "gan_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(*args, nproc=2, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    if check and run.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return run


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch: every loss's steps, the misuse checks, and an uninterrupted run."""
    out = tmp_path_factory.mktemp("distributed")
    torchrun(str(WORKERS / "gan_worker.py"), "equivalence", str(out))
    return out, torch.load(out / "equivalence.pt", weights_only=False)


@pytest.mark.parametrize("name", ["fgan", "wgan-gp", "mmd", "mmd-critic", "sam"])
def test_two_processes_equal_one_on_the_global_batch(two_processes, name):
    worker = _worker()
    result = two_processes[1][name]
    X, Z = worker.global_batches(2)
    G, C, grads, records = worker.run_loss(name, X, Z, slice(None))
    backwards = 2 if name == "sam" else 1  # SAM back-propagates twice per step
    assert len(grads) == len(result["grads"]) == backwards * worker.STEPS
    for step, (mine, theirs) in enumerate(zip(grads, result["grads"])):
        assert set(mine) == set(theirs), step
        for key in mine:
            assert torch.allclose(mine[key], theirs[key], rtol=0, atol=TOLERANCE), (step, key)
    assert torch.allclose(worker.flat(G, C), result["ranks"][0], rtol=0, atol=TOLERANCE)
    # the reported metrics: the mean over ranks, equal to the global batch's for these losses
    for key in ("critic_loss", "generator_loss"):
        local = [last[key] for last in result["local_last"]]
        assert result["mean_last"][key] == pytest.approx(sum(local) / 2, abs=1e-12)
        assert result["mean_last"][key] == pytest.approx(records[-1][key], abs=TOLERANCE)
    assert result["mean_last"]["step"] == worker.STEPS - 1  # ints are kept


# The generator gradient penalty squares each rank's own gradient: in sync, not the global batch's.
@pytest.mark.parametrize("name", ["fgan", "wgan-gp", "mmd", "mmd-critic", "sam", "generator-penalty"])
def test_ranks_hold_identical_parameters(two_processes, name):
    ranks = two_processes[1][name]["ranks"]
    assert len(ranks) == 2 and torch.equal(ranks[0], ranks[1])


def test_killed_and_resumed_run_is_bit_identical(two_processes):
    out, _ = two_processes
    run = out / "killed"
    killed = torchrun(str(WORKERS / "gan_worker.py"), "train", str(run), "6", "--kill-after", "5", check=False)
    assert killed.returncode != 0  # SIGKILL after step 5; the newest checkpoint is step 4's
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    torchrun(str(WORKERS / "gan_worker.py"), "train", str(run), "6", "--resume")
    resumed = torch.load(run / "final.pt", weights_only=False)
    reference = torch.load(out / "uninterrupted" / "final.pt", weights_only=False)
    assert resumed["start"] == 4
    assert torch.equal(resumed["ranks"][0], resumed["ranks"][1])
    assert torch.equal(resumed["ranks"][0], reference["ranks"][0])
    assert resumed["last"] == reference["last"]


def test_only_rank_0_writes(two_processes):
    out, _ = two_processes
    assert (out / "direct-rank0" / "ckpt-00000000.pt").is_file()
    assert not (out / "direct-rank1").exists()
    assert sorted(p.name for p in (out / "uninterrupted" / "checkpoints").iterdir()) == [
        "ckpt-00000004.pt", "ckpt-00000006.pt"]


def test_unwrapped_players_are_refused(two_processes):
    misuse = two_processes[1]["misuse"]
    assert "Expected the critic 'critic' wrapped for 2 processes" in misuse["critic"]
    assert "Expected the generator wrapped for 2 processes" in misuse["generator"]


# -- one process: the helpers are the identity ----------------------------------------------------
def test_one_process_helpers():
    context = distributed.setup()
    assert (context.rank, context.world_size, context.device.type) == (0, 1, "cpu")
    net = torch.nn.Linear(2, 1)
    assert distributed.wrap(net) is net and distributed.unwrap(net) is net and not distributed.is_wrapped(net)
    x = torch.randn(3, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.all_mean(2.5) == 2.5
    assert torch.equal(distributed.all_mean(torch.ones(2)), torch.ones(2))
    assert distributed.all_mean({"a": 1.5, "step": 3, "name": "x"}) == {"a": 1.5, "step": 3, "name": "x"}
    distributed.barrier()


def test_wrap_refuses_bad_modules():
    with pytest.raises(ValueError, match="Expected a torch.nn.Module, actual int"):
        distributed.wrap(3)

    class Wrapped(torch.nn.Module):  # what Fabric's wrapper looks like to unwrap
        def __init__(self, module):
            super().__init__()
            self._forward_module = self._original_module = module

    inner = torch.nn.Linear(2, 1)
    assert distributed.unwrap(Wrapped(inner)) is inner and distributed.is_wrapped(Wrapped(inner))
    with pytest.raises(ValueError, match="Expected a plain module, actual one already wrapped"):
        distributed.wrap(Wrapped(inner))


def test_setup_refuses_unknown_backend(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="Expected backend 'gloo' or 'nccl', actual 'mpi'"):
        distributed.setup("mpi")


def test_sharded_minibatches_split_each_global_batch():
    data = torch.arange(20.0)
    ranks = [distributed.ShardedMinibatches(data, 3, seed=1, world_size=2, rank=r) for r in range(2)]
    for epoch in range(2):
        seen = [torch.cat([next(it) for _ in range(3)]) for it in ranks]  # 10 per rank: 3 batches
        assert len(set(seen[0].tolist()) | set(seen[1].tolist())) == 18  # disjoint within the epoch
        assert all(it.epoch == epoch for it in ranks)
    saved = ranks[0].state_dict()
    following = next(ranks[0])
    ranks[0].load_state_dict(saved)
    assert torch.equal(next(ranks[0]), following) and saved == {"epoch": 1, "position": 9}
    with pytest.raises(ValueError, match=r"Expected batch_size to be an int in \[1, len\(data\) // world_size = 10\]"):
        distributed.ShardedMinibatches(data, 11, world_size=2, rank=0)
    with pytest.raises(ValueError, match="Expected a tensor of data, actual list"):
        distributed.ShardedMinibatches([1.0], 1)


def test_loader_has_its_own_generator():
    dataset = torch.utils.data.TensorDataset(torch.arange(8.0))
    loader = distributed.loader(dataset, 4, seed=0)
    before = torch.get_rng_state()
    assert sorted(torch.cat([b[0] for b in loader]).tolist()) == list(map(float, range(8)))
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched


def test_checkpoint_with_wrapper_prefixed_names_is_refused(tmp_path):
    net = torch.nn.Linear(2, 1)
    prefixed = {f"module.{k}": v for k, v in net.state_dict().items()}  # what DDP's state_dict holds
    state = TrainingState(modules={"net": net}, param_store=False).capture(step=1)
    state["modules"]["net"] = prefixed
    with pytest.raises(CheckpointError, match="Expected the state dict of 'net' saved from the plain module"):
        TrainingState(modules={"net": net}, param_store=False).restore(state)


def test_checkpoint_from_another_world_size_is_refused(tmp_path):
    net = torch.nn.Linear(2, 1)
    training = TrainingState(modules={"net": net}, param_store=False)
    distributed.save_checkpoint(tmp_path, training, 2)
    path, saved = distributed.load_latest(tmp_path, training)
    assert saved["world_size"] == 1 and len(saved["rank_rng"]) == 1
    raw = torch.load(path, weights_only=True)
    raw["world_size"] = 2
    from bayesgan.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, {**{k: v for k, v in raw.items() if k not in ("format", "version")}, "step": 3})
    with pytest.raises(CheckpointError, match="Expected a checkpoint saved by 1 processes to resume on 1, actual 2"):
        distributed.load_latest(tmp_path, training)
    assert distributed.load_latest(tmp_path / "empty", training) is None


# -- the command ----------------------------------------------------------------------------------
def test_train_nproc_2_writes_once_from_rank_0(tmp_path, capsys):
    from bayesgan import cli

    out = tmp_path / "run"
    flags = ["train", "--steps", "6", "--batch-size", "16", "--num-data", "64", "--width", "8", "--depth", "1",
             "--eval-samples", "50", "--log-every", "3", "--checkpoint-every", "3", "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "bayesgan", *flags, "--nproc", "2"], capture_output=True,
                         text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("outputs in") == 1  # one summary: rank 0's
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "metrics.json", "params.pt", "samples.png",
                                                     "train_log.csv"]
    assert len((out / "train_log.csv").read_text().splitlines()) == 3  # header + steps 3 and 6, once
    saved = torch.load(out / "checkpoints" / "ckpt-00000006.pt", weights_only=True)
    assert saved["world_size"] == 2 and len(saved["rank_rng"]) == 2 and saved["config"]["nproc"] == 2
    assert not any(k.startswith("module.") for k in saved["modules"]["critic"])
    # resuming it on one process is refused, naming the difference
    assert cli.main([*flags, "--resume", "--quiet"]) == 1
    assert "--nproc 2 in the checkpoint, 1 now" in capsys.readouterr().err


# -- Lightning Fabric -------------------------------------------------------------------------------
def test_lightning_fabric_ddp_equals_one_process_and_runs_bf16(tmp_path):
    pytest.importorskip("lightning_fabric")
    torchrun(str(WORKERS / "gan_worker.py"), "fabric", str(tmp_path))
    result = torch.load(tmp_path / "fabric.pt", weights_only=False)
    worker = _worker()
    X, Z = worker.global_batches(2)
    G, C, grads, _ = worker.run_loss("fgan", X, Z, slice(None))
    exact = result["64-true"]
    for mine, theirs in zip(grads, exact["grads"], strict=True):
        for key in mine:
            assert torch.allclose(mine[key], theirs[key], rtol=0, atol=TOLERANCE), key
    assert torch.allclose(worker.flat(G, C), exact["ranks"][0], rtol=0, atol=TOLERANCE)
    assert torch.equal(exact["ranks"][0], exact["ranks"][1])
    mixed = result["bf16-mixed"]  # fabric.backward, autocast to bfloat16 in the wrappers' forward
    assert torch.equal(mixed["ranks"][0], mixed["ranks"][1]) and torch.isfinite(mixed["ranks"][0]).all()
    assert len(mixed["grads"]) == worker.STEPS and all(torch.isfinite(g).all() for g in mixed["grads"][-1].values())
