"""The BiGAN examples run end to end with tiny settings."""

import importlib.util
import json
import math
import pathlib

import pytest

from bayesgan import latent

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEYS = {
    latent.KEY_RECONSTRUCTION_MSE, latent.KEY_RECONSTRUCTION_RELATIVE_MSE, latent.KEY_CYCLE_MSE,
    latent.KEY_MEAN_ERROR, latent.KEY_COV_ERROR, latent.KEY_COV_RELATIVE_ERROR,
}


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "data,encoder", [("linear", "deterministic"), ("banana", "stochastic"), ("ring", "deterministic")]
)
def test_bigan_2d_runs(tmp_path, data, encoder):
    example = _load("bigan_2d")
    args = example.parser().parse_args(["--data", data, "--encoder", encoder, "--steps", "3", "--num-data", "64",
                                        "--batch-size", "16", "--width", "8", "--quiet", "--out", str(tmp_path)])
    result = example.main(args)
    assert KEYS <= set(result) and all(math.isfinite(result[k]) for k in KEYS)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["result"] == result and saved["config"]["data"] == data
    assert (tmp_path / "bigan_2d.png").stat().st_size > 0


@pytest.mark.parametrize("encoder", ["deterministic", "stochastic"])
def test_bigan_digits_runs(tmp_path, encoder):
    pytest.importorskip("sklearn")
    example = _load("bigan_digits")
    args = example.parser().parse_args(["--encoder", encoder, "--steps", "2", "--batch-size", "8", "--latent-dim", "4",
                                        "--width", "16", "--channels", "4", "--quiet", "--out", str(tmp_path)])
    result = example.main(args)
    assert KEYS <= set(result) and all(math.isfinite(result[k]) for k in KEYS)
    assert 0.0 <= result["probe_accuracy"] <= 1.0 and result["pixel_probe_accuracy"] > 0.9
    assert json.loads((tmp_path / "report.json").read_text())["result"] == result
    assert (tmp_path / "bigan_digits.png").stat().st_size > 0
