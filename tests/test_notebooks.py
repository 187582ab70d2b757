"""The example notebooks run end to end (in a Jupyter kernel) with tiny settings."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("arviz")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bayesian_comparison_notebook_runs(tmp_path, monkeypatch):
    settings = {"BAYESGAN_NB_STEPS": "40", "BAYESGAN_NB_DRAWS": "20", "BAYESGAN_NB_SAMPLES": "200",
                "BAYESGAN_NB_OUT": str(tmp_path), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(ROOT / "examples" / "bayesian_comparison.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    written = {p.name for p in tmp_path.iterdir()}
    assert {"samples.png", "training.png", "predictive_spread.png", "compare.png"} <= written
    assert {f"{v}.nc" for v in ("deterministic", "relaxed", "mc-dropout", "stochastic-last-layer")} <= written
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
