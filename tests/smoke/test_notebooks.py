"""The notebooks run top to bottom on tiny data, and are stored without outputs."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebooks
NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_tiny_data(path, monkeypatch, scored_tiny):
    cfg = scored_tiny[0]
    monkeypatch.setenv("PRISMREC_CONF", "")
    monkeypatch.setenv("PRISMREC_SET", f"paths.output={cfg.paths.output};paths.data={cfg.paths.data}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parents[1])}}).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "output:" in text
    if path.name == "user_interests.ipynb":
        assert "interest 0: weight" in text and "recommendations:" in text
    else:
        assert "sessions; median length" in text and "of the events" in text
