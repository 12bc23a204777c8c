"""Execute the notebooks with tiny budgets, so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, tmp_path: Path, timeout: int = 600) -> list:
    """Run a notebook in ``tmp_path``; its outputs, after checking none is an error."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": {"n_envs": 64},
                "policy": {"net_arch": [16, 16]},
                "algorithm": {"n_steps": 8, "batch_size": 256, "n_epochs": 1},
            }
        )
    )
    monkeypatch.setenv("NBA_QUICKSTART_TIMESTEPS", "512")  # one rollout, one update
    monkeypatch.setenv("NBA_QUICKSTART_EVAL_CUSTOMERS", "200")
    monkeypatch.setenv("NBA_QUICKSTART_CONFIG", str(config))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    outputs = execute("01_quickstart.ipynb", tmp_path)
    assert (tmp_path / "mlflow.db").is_file()
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3


@pytest.mark.slow
def test_calibration_notebook_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    monkeypatch.setenv("NBA_DATA_HOME", str(shared_data.resolve()))
    monkeypatch.setenv("NBA_CALIBRATION_TIMESTEPS", "65536")  # one rollout of 2,048 x 32
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    outputs = execute("02_calibrate_twin.ipynb", tmp_path)
    assert (tmp_path / "hillstrom_twin" / "report.md").is_file()
    assert (tmp_path / "mlflow.db").is_file()
    # section 7, purchases only: the assumed channel response, the ratio, the bucket figure
    text = " ".join(str(o.get("text", "")) + str(o.get("data", "")) for o in outputs)
    assert "no sends in the log" in text and "heterogeneity.rate_shape" in text
    assert "MAE ratio twin / BG/NBD" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # sections 1-6 show none
    assert (tmp_path / "forecast_by_bucket.png").is_file()


@pytest.mark.slow
def test_offline_evaluation_notebook_runs(tmp_path: Path) -> None:
    outputs = execute("03_offline_evaluation.ipynb", tmp_path, timeout=120)
    text = " ".join(str(o.get("text", "")) + str(o.get("data", "")) for o in outputs)
    assert "true value per decision" in text and "snips" in text and "dr_fqe" in text


@pytest.mark.slow
def test_continuous_loop_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("CUSTOMERS", 600), ("WEEKS", 4), ("EVAL_CUSTOMERS", 300)):
        monkeypatch.setenv(f"NBA_LOOP_{name}", str(value))
    monkeypatch.setenv("NBA_LOOP_CHANGE_WEEK", "2")
    outputs = execute("04_continuous_loop.ipynb", tmp_path, timeout=300)
    text = " ".join(str(o.get("text", "")) + str(o.get("data", "")) for o in outputs)
    assert "week  4 [retail-world-changed]" in text and "channel_attention" in text
    assert "week12_share" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert (tmp_path / "loop.png").stat().st_size > 20_000
