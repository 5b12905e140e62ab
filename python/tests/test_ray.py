"""Ray Data batch inference with cbamrun.ray on a local 2-CPU cluster, two actors each holding one
Session. Arrays: 40 inputs through map_batches; the two stored zoo inputs are checked against
PyTorch's outputs, all 40 against the same Session run directly, one input at a time. Files:
tools/ray_batch.py on 40 photos and .npy files against `cbam-run batch` on the same folder, whose
results.jsonl and map files must be the same line by line (both front ends of one runtime agree).
The chunks of files run_files hands to its actors: test_chunk_sizes."""
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is installed by tools/install-deps.sh (python/requirements-ray.txt)")

import cbamrun
import cbamrun.ray
from conftest import MANIFEST, MODELS, REPO, assert_close, model_path, run_cli

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


DEMO = MODELS / "demo_shapes_cbam"


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch_inputs(folder):
    """40 inputs of the demo model: its 4 sample photos, a truncated PNG (an error on both sides),
    a float64 .npy (converted) and 34 float32 .npy files, in a folder and a subfolder."""
    (folder / "arrays").mkdir(parents=True)
    photos = sorted((DEMO / "samples").glob("*.png"))
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    (folder / "truncated.png").write_bytes(photos[0].read_bytes()[:300])
    rng = np.random.default_rng(41)
    np.save(folder / "arrays" / "float64.npy", rng.standard_normal((1, 3, 64, 64)))
    for i in range(34):
        np.save(folder / "arrays" / f"{i:02d}.npy", rng.standard_normal((1, 3, 64, 64)).astype(np.float32))


def comparable(record):
    """A record without what only the CLI makes (pictures, pages, thumbnails) or what is timed."""
    record = {k: v for k, v in record.items() if k not in ("seconds", "page", "thumbnail")}
    for m in record.get("maps", []):
        m["files"] = [f for f in m["files"] if f.endswith(".npy")]
    return record


def test_ray_batch_equals_cli_batch(cluster, tmp_path, monkeypatch):
    """tools/ray_batch.py on 2 actors writes the records and map files `cbam-run batch` writes, line by line."""
    monkeypatch.setenv("CBAM_CONV", "im2col")
    inputs = tmp_path / "inputs"
    batch_inputs(inputs)
    model, labels = DEMO / "torchscript_op17.onnx", DEMO / "labels.txt"
    common = [model, inputs, "--attention", "--labels", labels]
    cli = run_cli("batch", *common, "--output-dir", tmp_path / "cli", check=False)
    assert cli.returncode == 1, cli.stderr  # the truncated PNG
    assert load_tool("ray_batch").main([*map(str, common), "--output-dir", str(tmp_path / "ray"), "--batch-size", "4"]) == 1

    cli_lines = (tmp_path / "cli" / "results.jsonl").read_text().splitlines()
    ray_lines = (tmp_path / "ray" / "results.jsonl").read_text().splitlines()
    assert len(cli_lines) == len(ray_lines) == 40
    statuses = []
    for cli_line, ray_line in zip(cli_lines, ray_lines):
        expected, actual = json.loads(cli_line), json.loads(ray_line)
        assert sorted(actual) == sorted(k for k in expected if k not in ("page", "thumbnail"))
        assert comparable(actual) == comparable(expected), f"{expected['file']}"
        statuses.append(actual["status"])
        for m in actual.get("maps", []):
            [file] = m["files"]
            assert np.array_equal(np.load(tmp_path / "ray" / file), np.load(tmp_path / "cli" / file)), file
    assert statuses.count("error") == 1
    # the demo model has 3 CBAM blocks: a channel and a spatial map each
    assert all(len(json.loads(line).get("maps", [])) == 6 for line in ray_lines if json.loads(line)["status"] == "ok")


def test_chunk_sizes():
    """The calls of run_files: at most B files each, shrinking towards the end (guided) so the
    actors finish together, every file once; with --stack, B each."""
    from cbamrun.ray import chunk_sizes

    assert chunk_sizes(200, 16, 2) == [16] * 9 + [14, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1]
    assert chunk_sizes(200, 16, 2, fixed=True) == [16] * 12 + [8]
    assert chunk_sizes(0, 16, 2) == [] and chunk_sizes(1, 16, 2) == [1]
    for count, batch, actors in [(40, 4, 2), (7, 16, 1), (1000, 8, 16), (33, 1, 2)]:
        sizes = chunk_sizes(count, batch, actors)
        assert sum(sizes) == count and max(sizes) <= batch and min(sizes) >= 1
        assert sizes == sorted(sizes, reverse=True)
