"""The README's example runs as written."""

import pathlib
import re

import pyro

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_example_runs():
    text = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace = {}
    pyro.set_rng_seed(0)
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (1000, 2)
    assert set(namespace["loss"].last) >= {"critic_loss", "generator_loss", "divergence"}
