"""A tiny trained run and its exports, built once per test run (`conftest.built_once`) and
shared read-only by the export, translate, serving-client and other tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from typing import Optional

from conftest import built_once, tiny_config
from programs import run_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX_INSTALLED = all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnx", "onnxruntime"))


def web_runtime_installed() -> bool:
    from pix2pix_tf.export import web
    from pix2pix_tf.export.config import ExportError

    try:
        web.runtime_version()
    except ExportError:
        return False
    return True


def run(command: list[str], timeout: float = 300, cwd: Optional[str] = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, **kwargs)


def trained_run(tmp_path_factory, data_dir: str) -> str:
    """A unet_128 (ngf=8) run trained for 2 steps by the real trainer: the checkpoint format
    export reads (G, D, both optimizers, step, dropout state). No held-out evaluation (samples,
    held-out L1): the tests that read those train runs of their own. Built once per test run."""
    from pix2pix_tf.training.loop import train

    def trained(folder) -> str:
        train(tiny_config(str(folder), data_dir, optim=dict(steps=2), run=dict(eval_examples=0)))
        return str(folder)

    return built_once(tmp_path_factory, "run", trained)


def exported(tmp_path_factory, data_dir: str) -> dict:
    """The run exported twice by export.py's main: version 1 in paper mode with all four TFLite
    variants, timed (--benchmark), and, where LiteRT.js is installed, the web page; version 2 deterministic with a
    uint8-I/O int8 variant and, where the onnx extra is installed, the ONNX file (one export of
    each kind serves every test that reads one). Built once per test run."""
    workdir = trained_run(tmp_path_factory, data_dir)

    def export(folder) -> dict:
        export_dir = str(folder)
        common = [f"--workdir={workdir}", f"--export_dir={export_dir}", "--model_name=tiny", "--check_examples=2",
                  "--calibration_examples=4"]
        paper = run_program("export", *common, "--benchmark", *(["--web"] if web_runtime_installed() else []))
        assert paper.returncode == 0, paper.stderr[-4000:]
        onnx = ["--onnx"] if ONNX_INSTALLED else []
        deterministic = run_program("export", *common, "--deterministic", "--tflite=int8", "--int8_io=uint8", *onnx)
        assert deterministic.returncode == 0, deterministic.stderr[-4000:]
        return {
            "workdir": workdir, "export_dir": export_dir, "base": os.path.join(export_dir, "tiny"),
            "paper": os.path.join(export_dir, "tiny", "1"), "deterministic": os.path.join(export_dir, "tiny", "2"),
            "tflite_paper": os.path.join(export_dir, "tflite", "tiny", "1"),
            "tflite_deterministic": os.path.join(export_dir, "tflite", "tiny", "2"),
            "paper_stdout": paper.stdout, "deterministic_stdout": deterministic.stdout,
            "web": os.path.join(export_dir, "web", "tiny", "1"),
            "onnx_folder": os.path.join(export_dir, "onnx", "tiny", "2"),
            "onnx_file": os.path.join(export_dir, "onnx", "tiny", "2", "tiny.onnx"),
        }

    return built_once(tmp_path_factory, "export", export)
