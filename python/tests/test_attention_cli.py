"""The maps Session.run(attention=True) returns are the CLI's `--attention` .npy files, bit for bit.

Both sides get CBAM_CONV=im2col: by default each process times the Conv kernels when it
compiles a plan and may pick another one under load, and two kernels round differently
(the CLI run twice at --threads 2 differs from itself in the last bits then)."""
import json

import numpy as np
import pytest

import cbamrun
from conftest import MANIFEST, MODELS, model_path, run_cli

CASES = [
    "seed000_cbam_fc_k7/torchscript_op17",
    "seed002_splat_r2/torchscript_op13",
    "seed001_resnetfpn4_cbam/dynamo_op20",
]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_maps_equal_cli_npy_files(name, threads, tmp_path, monkeypatch):
    monkeypatch.setenv("CBAM_CONV", "im2col")  # read by this process's sessions and the CLI it starts
    entry = MANIFEST[name]
    input_file = MODELS / entry["inputs"][0]["file"]
    run_cli(model_path(name), input_file, "--attention", tmp_path, "--threads", threads)
    report = json.loads((tmp_path / "attention.json").read_text())

    session = cbamrun.Session(model_path(name), threads=threads)
    _, maps = session.run({entry["inputs"][0]["name"]: np.load(input_file)}, attention=True)

    assert len(maps) == len(report["maps"]) > 0
    for record, written in zip(maps, report["maps"]):
        assert (record.index, record.block, record.kind, record.name, record.node) == \
               (written["index"], written["block"], written["kind"], written["tensor"], written["node"])
        expected = np.load(tmp_path / written["files"][0])
        assert record.array.dtype == expected.dtype and record.array.shape == expected.shape
        assert np.array_equal(record.array, expected), f"map {record.index} differs from the CLI's {written['files'][0]}"
