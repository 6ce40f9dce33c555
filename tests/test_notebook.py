"""notebooks/pix2pix_tf.ipynb runs from start to end in a real Jupyter kernel (nbclient), with tiny
settings put in after its parameters cell, as papermill does: it cannot rot unseen."""

from __future__ import annotations

import base64
import importlib.util
import os

import numpy as np
import pytest

from export_helpers import ROOT

if os.environ.get("CI"):  # CI installs the test and onnx extras (.ci/run): missing, it is a failure.
    import nbclient
    import nbformat
else:
    nbclient = pytest.importorskip("nbclient", reason='the test extra: pip install -e ".[test]"')
    nbformat = pytest.importorskip("nbformat", reason='the test extra: pip install -e ".[test]"')

NOTEBOOK = os.path.join(ROOT, "notebooks", "pix2pix_tf.ipynb")


def _with_tiny_settings(notebook, workdir: str, data_dir: str, onnx: bool):
    """The notebook with a cell of tiny settings after the one tagged `parameters`: 4 steps of a
    narrow unet_128, with held-out samples and L1 (one pair) at the first and the last (steps 0
    and 4), no TFLite file."""
    (index,) = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    tiny = (f"WORKDIR = {workdir!r}\nDATASET = 'shapes/64'\nDATA_DIR = {data_dir!r}\n"
            "GENERATOR, NGF, NDF = 'unet_128', 4, 4\nSTEPS = 4\nSAMPLE_EVERY = 4\nEVAL_EXAMPLES = 1\n"
            f"TFLITE = ()\nONNX = {onnx}\nCHECK_EXAMPLES = 1\n")
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(tiny, metadata={"tags": ["injected-parameters"]}))
    return notebook


def _pngs(cell) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_notebook_is_stored_without_outputs_and_parameters_are_one_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "MIXED_PRECISION = None" in tagged[0].source


@pytest.mark.slow
def test_notebook_runs_end_to_end_with_tiny_settings(data_dir, tmp_path, monkeypatch):
    onnx = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime"))
    # Should the kernel not find the installed package, its install cell must fail rather than
    # install a copy into this environment: a source that does not exist makes pip refuse at once.
    monkeypatch.setenv("PIX2PIX_TF_SOURCE", str(tmp_path / "no-such-source"))
    notebook = _with_tiny_settings(nbformat.read(NOTEBOOK, as_version=4), str(tmp_path / "run"), data_dir, onnx)
    # The notebook's folder is its working directory in Jupyter; here a scratch folder, so nothing
    # lands in the checkout. The kernel inherits this process's environment (PYTHONPATH included).
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # Raises CellExecutionError, with the cell and its traceback, if a cell fails.

    def output_of(text: str) -> str:
        return _text(next(cell for cell in notebook.cells if cell.cell_type == "code" and text in cell.source))

    assert "nothing to install" in output_of("pip")  # The guard: CI's environment is left as it is.
    training = output_of("result = train(config)")
    assert "step 4, checkpoint" in training and "4/4" in training  # The progress bar reached the end.
    pictures = [cell for cell in notebook.cells if cell.cell_type == "code" and _pngs(cell)]
    assert len(pictures) == 3  # Samples, the translation, the held-out L1 plot, inline.
    exported = output_of("exported = export(")
    assert "SavedModel:" in exported and (("ONNX:" in exported) == onnx)
    translation = output_of("translate_files(")
    assert ("Translated with ONNX" if onnx else "Translated with SavedModel") in translation
    strip = _png(tmp_path / "run" / "translated" / "pair.png")
    assert strip.shape == (128, 3 * 128, 3)  # input | output | target


def _png(path) -> np.ndarray:
    import tensorflow as tf

    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()
