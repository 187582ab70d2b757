"""The example scripts run end to end with tiny settings."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_toy_runs_every_variant(tmp_path):
    toy = _load("paper_toy")
    out = tmp_path / "toy.json"
    args = toy.parser().parse_args(["--depths", "0", "1", "--seeds", "0", "--epochs", "2",
                                    "--eval-samples", "500", "--quiet", "--out", str(out)])
    rows = toy.main(args)
    assert {(r["depth"], r["variant"]) for r in rows} == {(d, v) for d in (0, 1) for v in toy.VARIANTS}
    for row in rows:
        assert row["score"] > 0 and row["top_eigenvalue"] == row["top_eigenvalue"]
    saved = json.loads(out.read_text())
    assert saved["table"].count("\n") == 1 + len(rows)
