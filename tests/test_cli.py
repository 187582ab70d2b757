import csv
import json
import subprocess
import sys

import pytest
import torch

from bayesgan import cli, metrics
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
