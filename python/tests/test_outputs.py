"""Outputs and attention maps through the Python package against the zoo's stored
PyTorch results (Models/<model>/output.npy and attention/NN_<kind>.npy)."""
import numpy as np
import pytest

import cbamrun
from conftest import MANIFEST, MODELS, assert_close, feeds, model_path

# One of each family and exporter: CBAM (FC MLP), SK unit with BatchNorm kept, split
# attention radix 2 (dynamo), SE block (opset 13), seed 003's CBAM (dynamo), ResNet-50 + CBAM.
MODELS_UNDER_TEST = [
    "seed000_cbam_fc_k7/torchscript_op17",
    "seed002_skunit_s2/torchscript_op17_bnkept",
    "seed002_splat_r2/dynamo_op20",
    "seed002_se_block/torchscript_op13",
    "seed003_cbam/dynamo_op20",
    "seed004_resnet50_cbam/torchscript_op17",
]


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_outputs_match_pytorch(name):
    entry = MANIFEST[name]
    assert entry["onnxruntime_status"] == "ok"  # the stored output is one onnxruntime also reproduces
    session = cbamrun.Session(model_path(name), threads=1)
    outputs = session.run(feeds(name))
    assert list(outputs) == [item["name"] for item in entry["outputs"]] == [o.name for o in session.outputs]
    for item in entry["outputs"]:
        expected = np.load(MODELS / item["file"])
        assert outputs[item["name"]].dtype == np.float32
        worst = assert_close(outputs[item["name"]], expected, entry["atol"], entry["rtol"], f"{name} {item['name']}")
        print(f"{name}: largest difference from PyTorch {worst:.3g}")


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_attention_maps_match_pytorch(name):
    entry = MANIFEST[name]
    session = cbamrun.Session(model_path(name), threads=1)
    outputs, maps = session.run(feeds(name), attention=True)
    plain = session.run(feeds(name))
    for key in plain:
        assert np.array_equal(outputs[key], plain[key]), "capturing maps changed the output"
    assert [(m.index, m.kind) for m in maps] == [(a["index"], a["kind"]) for a in entry["attention"]]
    for record, reference in zip(maps, entry["attention"]):
        expected = np.load(MODELS / reference["file"])
        assert record.array.size == expected.size
        # The zoo's tolerance for maps (ZooConformanceTests): float32 rounding over up to 50 convolutions.
        assert_close(record.array.reshape(expected.shape), expected, 1e-5, 1e-4, f"{name} map {record.index}")
        assert isinstance(record.block, int) and record.name and record.node


def test_batch_is_symbolic():
    name = "seed000_cbam_fc_k7/torchscript_op17"
    session = cbamrun.Session(model_path(name), threads=1)
    x = feeds(name)["input"]
    expected = np.load(MODELS / MANIFEST[name]["outputs"][0]["file"])
    one = session.run({"input": x[1:2]})["output"]
    assert one.shape == (1, 32, 16, 16)
    assert_close(one, expected[1:2], 1e-4, 1e-4, "batch 1")
