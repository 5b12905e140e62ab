"""Ray Data batch inference with cbamrun.ray on a local 2-CPU cluster: 40 inputs through
map_batches with two actors, each holding one Session. The two stored zoo inputs are checked
against PyTorch's outputs; all 40 against the same Session run directly, one input at a time."""
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is installed by tools/install-deps.sh (python/requirements-ray.txt)")

import cbamrun
import cbamrun.ray
from conftest import MANIFEST, MODELS, REPO, assert_close, model_path

NAME = "seed000_cbam_fc_k7/torchscript_op17"


@pytest.fixture(scope="module")
def cluster():
    import cbamrun.session

    env = {
        # The workers are new processes: they find the package and the very library this process uses.
        "PYTHONPATH": os.pathsep.join([str(REPO / "python"), os.environ.get("PYTHONPATH", "")]),
        "CBAMRUN_LIBRARY": cbamrun.session._lib.path,
        "CBAM_CONV": "im2col",  # the same Conv kernel in every process
    }
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    yield
    ray.shutdown()


def inputs():
    """40 items of [32, 16, 16]: the zoo's two stored inputs (PyTorch's outputs known), then 38 random ones."""
    stored = np.load(MODELS / MANIFEST[NAME]["inputs"][0]["file"])
    rng = np.random.default_rng(14)
    random = rng.standard_normal((38,) + stored.shape[1:]).astype(np.float32)
    return np.concatenate([stored, random])


def test_map_batches_on_two_cpus(cluster, monkeypatch):
    monkeypatch.setenv("CBAM_CONV", "im2col")
    items = inputs()
    dataset = ray.data.from_items([{"id": i, "input": x} for i, x in enumerate(items)])
    results = cbamrun.ray.map_batches(dataset, model_path(NAME), attention=True, batch_size=8)
    rows = sorted(results.take_all(), key=lambda row: row["id"])
    assert [row["id"] for row in rows] == list(range(40))

    expected = np.load(MODELS / MANIFEST[NAME]["outputs"][0]["file"])
    for i in range(2):
        assert_close(rows[i]["output"], expected[i], 1e-4, 1e-4, f"stored input {i} vs PyTorch")

    session = cbamrun.Session(model_path(NAME), threads=1)
    for row, x in zip(rows, items):
        outputs, maps = session.run({"input": x[None]}, attention=True)
        assert np.array_equal(row["input"], x)
        assert_close(row["output"], outputs["output"][0], 1e-6, 1e-5, f"item {row['id']}")
        for m in maps:
            assert_close(row[f"attention/{m.index:02d}_{m.kind}"], m.array[0], 1e-6, 1e-5, f"item {row['id']} map {m.index}")
