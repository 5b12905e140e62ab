"""Shared paths and helpers for the cbamrun package's tests.

Expected outputs and maps are the zoo's stored files (Models/, written by
tools/export_models.py from PyTorch and checked against onnxruntime there), never
cbam-run's own results; the CLI is used only where the test is that the two agree.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "Models"
MANIFEST = {entry["name"]: entry for entry in json.loads((MODELS / "manifest.json").read_text())["entries"]}


def cli_path() -> Path:
    """$CBAM_RUN, else the cbam-run binary of the same build as the libcbamrun.so the package
    loaded (debug and release builds may round differently)."""
    explicit = os.environ.get("CBAM_RUN")
    if explicit:
        return Path(explicit)
    import cbamrun.session

    beside = Path(cbamrun.session._lib.path).parent / "cbam-run"
    if not beside.exists():
        pytest.fail(f"{beside} is not built: run `swift build --product cbam-run` (make python-test does)")
    return beside


def run_cli(*args, check=True):
    completed = subprocess.run([str(cli_path()), *map(str, args)], capture_output=True, text=True)
    if check and completed.returncode != 0:
        raise AssertionError(f"cbam-run {' '.join(map(str, args))} failed:\n{completed.stderr}")
    return completed


def model_path(name: str) -> Path:
    return MODELS / MANIFEST[name]["file"]


def feeds(name: str) -> dict:
    entry = MANIFEST[name]
    return {item["name"]: np.load(MODELS / item["file"]) for item in entry["inputs"]}


def assert_close(actual, expected, atol, rtol, what):
    """|actual - expected| <= atol + rtol·|expected| everywhere, the largest difference in the message."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = atol + rtol * np.abs(expected.astype(np.float64))
    worst = float(difference.max()) if difference.size else 0.0
    assert np.all(difference <= bound), f"{what}: largest difference {worst:.3g} exceeds {atol} + {rtol}·|x|"
    return worst
