"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel (the venv's Python)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
KERNEL = "hfspark-venv"


def _kernel_spec(root: Path) -> Path:
    """A kernel spec that starts this interpreter (the venv's), found through JUPYTER_PATH."""
    folder = root / "kernels" / KERNEL
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "hfspark (venv)",
                "language": "python",
            }
        )
    )
    return root


def _text(cell: dict) -> str:
    return "".join(
        o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
    )


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    jupyter = _kernel_spec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("HFSPARK_QUICKSTART_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=600,
        allow_errors=False,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    outputs = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "feature-extraction" in outputs
    assert "array<float>" in outputs
    assert "5 rows, columns ['id', 'text', 'embedding'], 384 dimensions, Delta version 0" in outputs
    assert "best match: 1" in outputs  # the JSON sentence answers the JSON question
    from deltalake import DeltaTable

    assert DeltaTable(str(tmp_path / "work" / "embeddings")).to_pyarrow_table().num_rows == 5
