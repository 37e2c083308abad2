"""The notebooks run top to bottom on a quick run, and are stored without outputs."""

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run_notebooks(*notebooks, output, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lit_mnist.tools.notebooks", *map(str, notebooks), "--output", str(output)],
        capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def text_of(book) -> str:
    return "".join(
        out.get("text", "") + out.get("data", {}).get("text/plain", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def images_in(book) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in book.cells if "outputs" in cell for out in cell.outputs
    )


def test_the_notebooks_are_the_two_described_in_the_docs():
    assert [n.name for n in NOTEBOOKS] == ["01_data.ipynb", "02_run.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda n: n.name)
def test_stored_without_outputs(notebook):
    book = nbformat.read(notebook, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{notebook.name} holds outputs"


def test_the_notebooks_run_on_a_quick_run(quick_run, real_mnist, tmp_path):
    result = run_notebooks(
        *NOTEBOOKS, output=tmp_path, env={"DATA_DIR": str(real_mnist), "LIT_MNIST_RUN": str(quick_run)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data, run = (nbformat.read(tmp_path / n.name, as_version=4) for n in NOTEBOOKS)
    for book in (data, run):
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code)
        assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    shown = text_of(data)
    assert "{'train': 55000, 'val': 5000, 'test': 10000}" in shown
    assert re.search(r"total\s+55000\s+5000\s+10000", shown)
    assert "images (64, 1, 28, 28) torch.uint8" in shown and "labels (64,) torch.int64" in shown
    mean = float(re.search(r"training pixels: mean (\d\.\d+)", shown).group(1))
    assert mean == pytest.approx(0.1307, abs=5e-4)
    assert images_in(data) == 5  # samples, balance, pixel statistics, class means, augmentation

    shown = text_of(run)
    assert f"run: {quick_run}" in shown and "Diagnosis:" in shown
    accuracy = float(re.search(r"test accuracy (\d+\.\d+)%", shown).group(1))
    recorded = 100 * json.loads((quick_run / "metrics.json").read_text())["test/acc"]
    assert accuracy == pytest.approx(recorded, abs=0.3)  # float32 here, bf16 in the run
    assert re.search(r"seven\.png: RGB to grayscale, inverted \(dark on light\), 300x300 scaled", shown)
    assert re.search(r"prediction: \d \(\d+\.\d%\), \d \(", shown)
    assert images_in(run) == 4  # curves, confusion matrix, worst digits, the image file


def test_a_failing_cell_names_itself_exits_1_and_keeps_the_copy(tmp_path):
    book = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_code_cell("raise ValueError('the data folder is empty')"),
            nbformat.v4.new_code_cell("never = True"),
        ]
    )
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, tmp_path / "broken.ipynb")
    result = run_notebooks(tmp_path / "broken.ipynb", output=tmp_path / "out")
    assert result.returncode == 1
    assert "failed at cell 2: ValueError: the data folder is empty" in result.stderr
    copy = nbformat.read(tmp_path / "out" / "broken.ipynb", as_version=4)
    assert copy.cells[0].execution_count == 1 and copy.cells[2].execution_count is None
    missing = run_notebooks(tmp_path / "nope.ipynb", output=tmp_path / "out")
    assert missing.returncode == 2 and "no such notebook" in missing.stderr
