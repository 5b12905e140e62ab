"""Session metadata, ownership of results, bytes, version."""
import gc

import numpy as np

import cbamrun
from conftest import MANIFEST, MODELS, feeds, model_path, run_cli

NAME = "seed000_cbam_fc_k7/torchscript_op17"
DYNAMO = "seed000_cbam_fc_k7/dynamo_op20"


def test_inputs_and_outputs_like_onnxruntime_nodeargs():
    session = cbamrun.Session(model_path(NAME))
    (x,) = session.inputs
    assert (x.name, x.type, x.shape, x.dtype) == ("input", "tensor(float)", ["batch", 32, 16, 16], np.float32)
    (y,) = session.get_outputs()
    assert (y.name, y.type) == ("output", "tensor(float)") and y.shape[1:] == [32, 16, 16]
    # The dynamo exporter names things differently; the manifest has its names.
    dynamo = cbamrun.Session(model_path(DYNAMO))
    assert [i.name for i in dynamo.inputs] == [i["name"] for i in MANIFEST[DYNAMO]["inputs"]]
    assert [o.name for o in dynamo.outputs] == [o["name"] for o in MANIFEST[DYNAMO]["outputs"]]


def test_outputs_outlive_the_session_and_are_distinct_per_run():
    session = cbamrun.Session(model_path(NAME), threads=1)
    x = feeds(NAME)["input"]
    first = session.run({"input": x})["output"]
    second, maps = session.run({"input": x * 0.5}, attention=True)
    session.close()
    del session
    gc.collect()
    expected = np.load(MODELS / MANIFEST[NAME]["outputs"][0]["file"])
    assert np.abs(first - expected).max() < 1e-4  # still readable after the session is gone
    assert not np.shares_memory(first, second["output"])
    assert maps[1].array.shape == (2, 1, 16, 16) and np.all((maps[1].array > 0) & (maps[1].array < 1))


def test_session_from_bytes_equals_from_path():
    data = model_path(NAME).read_bytes()
    x = feeds(NAME)["input"]
    a = cbamrun.Session(data, threads=1).run({"input": x})["output"]
    b = cbamrun.Session(str(model_path(NAME)), threads=1).run({"input": x})["output"]
    assert np.array_equal(a, b)


def test_non_contiguous_input_is_accepted():
    session = cbamrun.Session(model_path(NAME), threads=1)
    x = feeds(NAME)["input"]
    strided = np.asfortranarray(x)
    assert not strided.flags.c_contiguous
    assert np.array_equal(session.run({"input": strided})["output"], session.run({"input": x})["output"])


def test_version_is_the_cli_version():
    first_line = run_cli("--version").stdout.splitlines()[0]
    assert first_line == f"cbam-run {cbamrun.version()}"


def test_contiguous_float32_inputs_are_not_copied_in_python():
    """numpy reports its buffers to tracemalloc: a copy of a 4 MiB input in the wrapper would
    show as a 4 MiB peak. (The library's own copy into its tensors is not traced.)"""
    import tracemalloc

    session = cbamrun.Session(model_path(NAME), threads=1)
    x = np.ascontiguousarray(np.tile(feeds(NAME)["input"], (64, 1, 1, 1)))  # [128, 32, 16, 16], 4 MiB
    session.run({"input": x})
    tracemalloc.start()
    try:
        session.run({"input": x})
        _, contiguous_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        session.run({"input": x[:, :, :, ::-1]})  # a strided view: made contiguous first
        _, strided_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert contiguous_peak < x.nbytes / 8, f"{contiguous_peak} bytes traced for a {x.nbytes}-byte input"
    assert strided_peak >= x.nbytes  # the check sees a copy when there is one


def test_read_only_and_repeated_shapes():
    """Read-only arrays (np.load with mmap_mode, broadcasts) and a second shape on the same session."""
    session = cbamrun.Session(model_path(NAME), threads=1)
    x = feeds(NAME)["input"]
    expected = session.run({"input": x})["output"]
    frozen = x.copy()
    frozen.flags.writeable = False
    assert np.array_equal(session.run({"input": frozen})["output"], expected)
    assert np.array_equal(session.run({"input": x[:1]})["output"], expected[:1])
    assert np.array_equal(session.run({"input": x})["output"], expected)
