import csv
import json
import signal
import subprocess
import sys
import time

import pyro
import pytest
import torch

from bayesgan import _recipes, cli, metrics
from bayesgan.checkpoint import CheckpointWarning
from bayesgan.infer import FGANLoss, TrainingDivergedError
from bayesgan.nn import mlp

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("samples.png", "metrics.json", "params.pt", "train_log.csv")
TINY = ["--steps", "20", "--num-data", "256", "--batch-size", "32", "--eval-samples", "200",
        "--width", "16", "--depth", "1", "--log-every", "5", "--quiet"]


def _read_outputs(out):
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert (out / "samples.png").read_bytes()[:8] == PNG_MAGIC
    result = json.loads((out / "metrics.json").read_text())
    params = torch.load(out / "params.pt", weights_only=True)
    with open(out / "train_log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    return result, params, log


# -- help and flag errors -------------------------------------------------------------------
def test_module_help_subprocess():
    run = subprocess.run([sys.executable, "-m", "bayesgan", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "usage: bayesgan" in run.stdout
    assert "train" in run.stdout


def test_train_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--divergence", "--generator-objective", "--steps", "--batch-size",
                 "--lr-generator", "--lr-critic", "--betas", "--critic-steps", "--latent-dim",
                 "--width", "--depth", "--seed", "--num-data", "--eval-samples", "--out", "--quiet",
                 "--threads", "--lr-decay"):
        assert flag in text


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required"),
        (["fit"], "invalid choice"),
        (["train", "--divergence", "nope"], "invalid choice: 'nope'"),
        (["train", "--data", "nope"], "invalid choice: 'nope'"),
        (["train", "--generator-objective", "nope"], "invalid choice: 'nope'"),
        (["train", "--steps", "0"], "--steps: expected an integer >= 1, actual '0'"),
        (["train", "--steps", "ten"], "--steps: expected an integer >= 1, actual 'ten'"),
        (["train", "--depth", "-1"], "--depth: expected an integer >= 0"),
        (["train", "--lr-critic=-1e-3"], "--lr-critic: expected a finite number > 0"),
        (["train", "--lr-generator", "nan"], "--lr-generator: expected a finite number > 0"),
        (["train", "--betas", "0.5"], "--betas: expected two numbers in [0, 1)"),
        (["train", "--betas", "0.5,1.0"], "--betas: expected two numbers in [0, 1)"),
        (["train", "--lr-decay", "1.5"], "--lr-decay: expected a number in [0, 1]"),
        (["train", "--unknown-flag"], "unrecognized arguments"),
        (["train", "--arch", "vgg"], "invalid choice: 'vgg'"),
        (["train", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["train", "--amp", "fp16"], "invalid choice: 'fp16'"),
        (["train", "--dropout", "1"], "--dropout: expected a number in [0, 1), actual '1'"),
        (["train", "--keep", "0"], "--keep: expected an integer >= 1, actual '0'"),
        (["train", "--checkpoint-every", "-1"], "--checkpoint-every: expected an integer >= 0"),
        (["train", "--resume"], "--resume needs --out, the folder of the run to continue"),
    ],
)
def test_bad_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "error:" in err


def test_batch_larger_than_data_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--num-data", "10", "--batch-size", "20", "--out", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    assert "--batch-size 20 exceeds --num-data 10" in capsys.readouterr().err


def test_diverged_exits_1(tmp_path, monkeypatch, capsys):
    def diverge(self, losses, record):
        raise TrainingDivergedError("FGANLoss turned non-finite at step 0: test")

    monkeypatch.setattr(FGANLoss, "_check_finite", diverge)
    assert cli.main(["train", *TINY, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bayesgan: error: FGANLoss turned non-finite at step 0: test"]


# -- short runs -----------------------------------------------------------------------------
@pytest.mark.parametrize("data", ["gaussian_1d", "swiss_roll", "grid"])
def test_tiny_runs_write_outputs(data, tmp_path):
    out = tmp_path / data
    assert cli.main(["train", "--data", data, *TINY, "--out", str(out)]) == 0
    result, params, log = _read_outputs(out)
    assert set(params) == {"generator", "critic"}
    assert [int(row["step"]) for row in log] == [4, 9, 14, 19]
    assert {"critic_loss", "generator_loss", "divergence"} <= set(log[0])
    assert result["steps"] == 20
    assert result["config"]["data"] == data
    has_modes = data != "swiss_roll"
    assert (metrics.KEY_MODES in result) == has_modes


def test_lr_decay_and_options_run(tmp_path):
    out = tmp_path / "decay"
    argv = ["train", *TINY, "--lr-decay", "0.5", "--critic-steps", "2", "--divergence", "kl",
            "--generator-objective", "saturating", "--betas", "0.9,0.99", "--activation", "tanh",
            "--out", str(out)]
    assert cli.main(argv) == 0
    result, _, _ = _read_outputs(out)
    assert result["config"]["betas"] == [0.9, 0.99]
    assert result["config"]["lr_decay"] == 0.5
    assert result["config"]["generator_objective"] == "saturating"


def test_critic_size_and_resolved_config(tmp_path):
    out = tmp_path / "critic"
    assert cli.main(["train", *TINY, "--critic-width", "8", "--critic-depth", "2", "--out", str(out)]) == 0
    result, params, _ = _read_outputs(out)
    config = result["config"]
    assert (config["critic_width"], config["critic_depth"]) == (8, 2)
    assert config["generator_objective"] == "nonsaturating"  # the GAN divergence's own default
    mlp(2, 1, 8, 2).load_state_dict(params["critic"])
    mlp(2, 2, 16, 1).load_state_dict(params["generator"])


@pytest.mark.parametrize(
    "flags, loss_type",
    [
        (["--loss", "wgan-gp", "--penalty", "r1=1.0"], "WassersteinLoss"),
        (["--loss", "wgan-clip"], "WassersteinLoss"),
        (["--loss", "wgan-div", "--sam", "0.05"], "SAM"),
        (["--loss", "relativistic", "--penalty", "r2=0.5", "--penalty", "gp=1"], "RelativisticLoss"),
        (["--loss", "mmd", "--generator-penalty", "0.1"], "MMDLoss"),
        (["--divergence", "neyman", "--penalty", "output=0.1", "--generator-penalty", "1.0"], "FGANLoss"),
    ],
)
def test_losses_and_regularizers_by_name(flags, loss_type, tmp_path, monkeypatch):
    built = []
    real_make = cli.make_loss
    monkeypatch.setattr(cli, "make_loss", lambda args, critic: built.append(real_make(args, critic)) or built[-1])
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, *flags, "--out", str(out)]) == 0
    assert type(built[0]).__name__ == loss_type
    result, _, log = _read_outputs(out)
    assert result["config"]["loss"] == flags[1] if flags[0] == "--loss" else "fgan"
    assert {"critic_loss", "generator_loss"} <= set(log[0])


def test_relax_instance_noise_and_ema(tmp_path):
    out = tmp_path / "ema"
    argv = ["train", *TINY, "--relax", "0.1", "--instance-noise", "--ema", "0.9", "--ema-start", "5",
            "--out", str(out)]
    assert cli.main(argv) == 0
    _, params, _ = _read_outputs(out)
    assert set(params) == {"generator", "critic", "generator_ema"}
    assert any(not torch.equal(params["generator"][k], params["generator_ema"][k]) for k in params["generator"])


def test_batch_size_sweep_writes_one_run_each(tmp_path):
    out = tmp_path / "sweep"
    argv = ["train", *TINY, "--batch-size", "8", "16", "--out", str(out)]
    assert cli.main(argv) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert set(sweep) == {"8", "16"}
    for size in (8, 16):
        result, _, _ = _read_outputs(out / f"batch-{size}")
        assert result["config"]["batch_size"] == size


def test_paper_toy_preset(tmp_path):
    out = tmp_path / "toy"
    assert cli.main(["train", "--preset", "paper-toy", "--steps", "8", "--eval-samples", "1000",
                     "--quiet", "--out", str(out)]) == 0
    result, _, _ = _read_outputs(out)
    config = result["config"]
    assert (config["data"], config["num_data"], config["loss"], config["batch_size"]) == ("normal_2d", 200, "mmd", 50)
    assert config["lr_generator"] == 0.01 and config["activation"] == "leaky_relu"
    assert metrics.KEY_CHI2_DECILE in result and metrics.KEY_MODES not in result


def test_bad_penalty_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--penalty", "bogus=1"])
    assert exit_info.value.code == 2
    assert "NAME=WEIGHT" in capsys.readouterr().err


# -- the default run: PacGAN's 2D-ring ------------------------------------------------------
@pytest.mark.slow
def test_default_ring_covers_modes(tmp_path, capsys):
    out = tmp_path / "ring"
    assert cli.main(["train", "--out", str(out)]) == 0
    result, params, log = _read_outputs(out)
    summary = capsys.readouterr().out
    assert "modes" in summary

    for key in (metrics.KEY_MODES, metrics.KEY_HIGH_QUALITY, metrics.KEY_REVERSE_KL,
                metrics.KEY_MODE_COUNTS, "critic_loss", "generator_loss", "divergence",
                "wall_time_s", "steps", "config"):
        assert key in result
    config = result["config"]
    assert config["data"] == "ring" and config["num_data"] == 100_000 and config["eval_samples"] == 2_500
    assert sum(result[metrics.KEY_MODE_COUNTS]) == round(2_500 * result[metrics.KEY_HIGH_QUALITY])
    assert len(log) == result["steps"] // config["log_every"]

    generator = mlp(config["latent_dim"], 2, config["width"], config["depth"], config["activation"])
    generator.load_state_dict(params["generator"])
    critic = mlp(2, 1, config["critic_width"], config["critic_depth"], config["activation"])
    critic.load_state_dict(params["critic"])

    assert result[metrics.KEY_MODES] >= 7, result
    assert result[metrics.KEY_HIGH_QUALITY] >= 0.90, result


# -- bayesgan.nn.mlp, the networks of the command -------------------------------------------
def test_mlp_layers():
    net = mlp(3, 2, width=8, depth=2, activation=torch.nn.Tanh)
    assert [type(m) for m in net] == [torch.nn.Linear, torch.nn.Tanh] * 2 + [torch.nn.Linear]
    assert net(torch.zeros(4, 3)).shape == (4, 2)
    assert len(mlp(3, 2, width=8, depth=0)) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_dim": 0}, "Expected in_dim to be an int >= 1, actual 0"),
        ({"out_dim": 1.5}, "Expected out_dim to be an int >= 1, actual 1.5"),
        ({"width": True}, "Expected width to be an int >= 1, actual True"),
        ({"depth": -1}, "Expected depth to be an int >= 0, actual -1"),
        ({"activation": "gelu"},
         "Expected an activation in ['elu', 'leaky_relu', 'relu', 'silu', 'tanh'], actual 'gelu'"),
        ({"activation": 3}, "Expected an activation name or a callable, actual 3"),
    ],
)
def test_mlp_errors(kwargs, message):
    args = {"in_dim": 2, "out_dim": 1, "width": 4, "depth": 1, **kwargs}
    with pytest.raises(ValueError) as error:
        mlp(**args)
    assert str(error.value) == message


# -- images, devices, presets -----------------------------------------------------------------
IMAGES = ["train", "--data", "digits", "--steps", "3", "--batch-size", "8", "--latent-dim", "4",
          "--eval-samples", "16", "--log-every", "1", "--sample-every", "3", "--metrics-every", "3", "--quiet"]


@pytest.mark.parametrize(
    "flags, params_shape",
    [
        (["--arch", "mlp", "--width", "16", "--depth", "1"], ("0.0.weight", [16, 4])),  # 8x8, native
        (["--width", "2", "--loss", "wgan-div", "--critic-batchnorm", "--ema", "0.9", "--amp", "bf16",
          "--channels-last"], ("main.0.weight", [4, 8, 4, 4])),  # dcgan, upsampled to 32
        (["--arch", "resnet", "--width", "2", "--dropout", "0.1"], ("linear.weight", [32, 4])),
    ],
)
def test_image_runs_write_grids_and_metrics(flags, params_shape, tmp_path):
    out = tmp_path / "img"
    assert cli.main([*IMAGES, *flags, "--out", str(out)]) == 0
    result, params, log = _read_outputs(out)
    name, shape = params_shape
    assert list(params["generator"][name].shape) == shape
    assert (out / "samples" / "step-00000003.png").read_bytes()[:8] == PNG_MAGIC
    with open(out / "metrics_log.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [3]
    assert [int(row["step"]) for row in log] == [0, 1, 2] and float(log[0]["samples_per_s"]) > 0
    assert cli.KEY_KID_PIXELS in result
    # Grey images: FID and precision/recall in the digits classifier's feature space too.
    assert result["fid_digits"] > 0 and 0 <= result["precision_digits"] <= 1 and 0 <= result["recall_digits"] <= 1
    assert result["config"]["arch"] == flags[1] if flags[0] == "--arch" else "dcgan"


def test_tensorboard_when_installed(tmp_path, monkeypatch):
    calls = []

    class SummaryWriter:
        def __init__(self, log_dir, purge_step=None):
            calls.append(("init", log_dir, purge_step))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    fake = type(sys)("torch.utils.tensorboard")
    fake.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    out = tmp_path / "tb"
    assert cli.main(["train", *TINY, "--steps", "10", "--metrics-every", "10", "--out", str(out)]) == 0
    assert calls[0] == ("init", str(out / "tensorboard"), None) and calls[-1] == ("close",)
    assert ("train/critic_loss", 5) in calls and ("metrics/modes", 10) in calls


def test_image_folder_run(tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(6):
        Image.fromarray((torch.rand(12, 10) * 255).to(torch.uint8).numpy()).save(folder / f"{i}.png")
    out = tmp_path / "run"
    argv = [*IMAGES, "--data", str(folder), "--arch", "mlp", "--image-size", "8", "--channels", "1",
            "--batch-size", "4", "--width", "8", "--depth", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    _, params, _ = _read_outputs(out)
    assert list(params["critic"]["1.0.weight"].shape) == [8, 64]


def test_missing_image_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BAYESGAN_DATA", str(tmp_path / "empty"))
    assert cli.main(["train", "--data", "mnist", "--quiet", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bayesgan: error: Expected train-images-idx3-ubyte") and "bayesgan data mnist" in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--arch", "dcgan"], "Expected --arch mlp for the toy target 'ring', actual 'dcgan'"),
        (["--data", "digits", "--image-size", "20"],
         "Expected --image-size in (28, 32, 64, 128) for --arch dcgan, actual 20"),
        (["--data", "digits", "--arch", "resnet", "--image-size", "64"],
         "Expected --image-size 32 for --arch resnet, actual 64"),
        (["--data", "digits", "--batch-size", "2000"], "Expected --batch-size <= the 256 training points, actual 2000"),
    ],
)
def test_bad_combinations_exit_1(flags, message, tmp_path, capsys):
    assert cli.main(["train", *TINY, *flags, "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.strip() == f"bayesgan: error: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_exits_1(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--device", "cuda", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.startswith("bayesgan: error: Expected a CUDA device for --device cuda, actual none")


@pytest.mark.parametrize("preset, data, epoch", [("mnist-64", "mnist", 468), ("cifar10-64", "cifar10", 390)])
def test_image_presets_are_the_papers_runs(preset, data, epoch, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_train", lambda args: seen.append(_recipes.resolve(args)))
    assert cli.main(["train", "--preset", preset, "--lr-critic", "2e-3"]) == 0
    args = seen[0]
    assert (args.data, args.arch, args.image_size, args.latent_dim, args.width) == (data, "dcgan", 64, 100, 64)
    assert (args.loss, args.critic_steps, args.batch_size, args.betas) == ("wgan-div", 5, 128, (0.5, 0.999))
    assert (args.lr_generator, args.lr_critic, args.lr_decay) == (1e-3, 2e-3, 0.0)  # the flag wins
    assert (args.steps, args.warmup, args.ema, args.ema_start) == (250 * epoch, 10 * epoch, 0.999, 20 * epoch)
    assert args.critic_batchnorm and args.checkpoint_every == 1000
    assert args.dropout == (0.1 if data == "cifar10" else 0.0)


def test_lr_factor_warmup_then_decay():
    args = cli.build_parser().parse_args(["train", "--steps", "100", "--warmup", "10", "--lr-decay", "0.5"])
    factor = _recipes.lr_factor(args)
    expected = [0.01, 0.505, 1.0, 1.0, 0.505, 0.01, 0.01]
    assert [factor(s) for s in (0, 5, 10, 50, 75, 100, 200)] == pytest.approx(expected, rel=1e-14, abs=0)
    assert isinstance(_recipes.make_optimizer(args), pyro.optim.PyroLRScheduler)


# -- checkpoints and resume -------------------------------------------------------------------
STATEFUL = ["train", "--steps", "24", "--num-data", "256", "--batch-size", "32", "--eval-samples", "100",
            "--width", "8", "--depth", "1", "--log-every", "4", "--quiet", "--loss", "wgan-gp",
            "--critic-steps", "3", "--relax", "0.1", "--sam", "0.05", "--ema", "0.9", "--ema-start", "3",
            "--warmup", "5", "--lr-decay", "0.5", "--checkpoint-every", "8", "--keep", "2"]


def _same_run(a, b):
    """The same weights bit for bit, the same losses in the log, the same final metrics."""
    result_a, params_a, log_a = _read_outputs(a)
    result_b, params_b, log_b = _read_outputs(b)
    assert params_a.keys() == params_b.keys()
    for group in params_a:
        for name, value in params_a[group].items():
            assert torch.equal(value, params_b[group][name]), (group, name)
    strip = [{k: v for k, v in row.items() if k != "samples_per_s"} for row in log_a]
    assert strip == [{k: v for k, v in row.items() if k != "samples_per_s"} for row in log_b]
    assert {k: v for k, v in result_a.items() if k not in ("wall_time_s", "config")} == \
        {k: v for k, v in result_b.items() if k not in ("wall_time_s", "config")}


def test_interrupted_run_resumes_bit_for_bit_past_a_truncated_checkpoint(tmp_path, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main([*STATEFUL, "--out", str(full)]) == 0
    save = cli.save_checkpoint

    def save_then_stop(directory, state, *, keep):
        save(directory, state, keep=keep)
        if state["step"] == 16:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*STATEFUL, "--out", str(part)])
    monkeypatch.undo()
    newest = part / "checkpoints" / "ckpt-00000016.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # as if the disk lost the file's end
    with pytest.warns(CheckpointWarning, match="ckpt-00000016.pt"):
        assert cli.main([*STATEFUL, "--out", str(part), "--resume"]) == 0  # from step 8
    _same_run(full, part)
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == ["ckpt-00000016.pt", "ckpt-00000024.pt"]


def test_resume_checks_the_flags_and_new_runs_keep_off_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--checkpoint-every", "10", "--out", str(out)]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--resume", "--lr-critic", "1e-3", "--threads", "2"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"bayesgan: error: Expected the flags of the run in {out / 'checkpoints' / 'ckpt-00000020.pt'} to "
        f"resume it, actual differences: --lr-critic 0.002 in the checkpoint, 0.001 now")
    assert cli.main(argv) == 1
    assert "pass --resume to continue that run" in capsys.readouterr().err
    assert cli.main([*argv, "--resume", "--log-every", "7"]) == 0  # a finished run: outputs again
    fresh = tmp_path / "fresh"
    assert cli.main(["train", *TINY, "--checkpoint-every", "10", "--resume", "--out", str(fresh)]) == 0
    _same_run(out, fresh)


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    """A real ``bayesgan train`` process, killed with SIGKILL once its step-20 checkpoint exists,
    resumed, ends with the weights of an uninterrupted run (BatchNorm buffers, EMA, warm-up)."""
    argv = ["train", "--data", "digits", "--width", "4", "--latent-dim", "8", "--steps", "60",
            "--batch-size", "16", "--loss", "wgan-div", "--critic-steps", "5", "--critic-batchnorm",
            "--ema", "0.9", "--warmup", "10", "--checkpoint-every", "10", "--keep", "2",
            "--eval-samples", "32", "--log-every", "5", "--threads", "1", "--quiet"]
    killed, full = tmp_path / "killed", tmp_path / "full"
    process = subprocess.Popen([sys.executable, "-m", "bayesgan", *argv, "--out", str(killed)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoints" / "ckpt-00000020.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "params.pt").exists()  # killed before the end
    assert cli.main([*argv, "--out", str(killed), "--resume"]) == 0
    assert cli.main([*argv, "--out", str(full)]) == 0
    _same_run(full, killed)
