#!/usr/bin/env python3
"""Single-node cases for op variants that onnx's node cases do not reach (issue 15's ops:
GroupNormalization-18, LayerNormalization on an inner axis with a broadcast scale, Gelu's
tanh form on a feature map, CumSum's modes on an inner axis, Mod on floats, GatherND with
batch_dims and negative indices, InstanceNormalization on 3-D), with onnxruntime's outputs
(onnx.reference's where onnxruntime refuses the case).

Writes Tests/CBAMRuntimeTests/Fixtures/ort/<case>/{model.onnx, input_<i>.npy, output_<j>.npy}
and manifest.json (case, op, opset, inputs, outputs, reference). Deterministic (seeded).

    python3 tools/gen_ort_cases.py
"""
import json
import os
import shutil

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "CBAMRuntimeTests", "Fixtures", "ort")
rng = np.random.default_rng(15)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# (name, op, opset, attributes, runtime inputs {name: array}, initializers {name: array}, outputs)
CASES = [
    ("group_normalization_18_per_group_scale", "GroupNormalization", 18, {"num_groups": 3, "epsilon": 1e-3},
     {"x": f32(2, 6, 5, 4)}, {"scale": f32(3), "bias": f32(3)}, ["y"]),
    ("group_normalization_18_runtime_scale", "GroupNormalization", 18, {"num_groups": 2},
     {"x": f32(1, 4, 7), "scale": f32(2), "bias": f32(2)}, {}, ["y"]),
    ("group_normalization_21_one_group", "GroupNormalization", 21, {"num_groups": 1},
     {"x": f32(2, 5, 3, 3)}, {"scale": f32(5), "bias": f32(5)}, ["y"]),
    ("layer_normalization_axis1_broadcast_scale", "LayerNormalization", 17, {"axis": 1, "epsilon": 1e-6},
     {"x": f32(2, 4, 3, 5)}, {"scale": f32(4, 1, 1), "bias": f32(1, 3, 1)}, ["y", "mean", "inv_std_dev"]),
    ("layer_normalization_last_axis_no_bias", "LayerNormalization", 17, {},
     {"x": f32(2, 3, 3, 8)}, {"scale": f32(8)}, ["y"]),
    ("gelu_tanh_feature_map", "Gelu", 20, {"approximate": "tanh"}, {"x": 3 * f32(2, 3, 4, 4)}, {}, ["y"]),
    ("gelu_erf_feature_map", "Gelu", 20, {}, {"x": 3 * f32(2, 3, 4, 4)}, {}, ["y"]),
    ("cumsum_inner_axis_reverse_exclusive", "CumSum", 14, {"exclusive": 1, "reverse": 1},
     {"x": f32(2, 5, 3)}, {"axis": np.array(1, dtype=np.int64)}, ["y"]),
    ("cumsum_int32_negative_axis", "CumSum", 14, {},
     {"x": rng.integers(-50, 50, (3, 4)).astype(np.int32)}, {"axis": np.array(-1, dtype=np.int32)}, ["y"]),
    ("mod_float_fmod1_broadcast", "Mod", 13, {"fmod": 1},
     {"a": 5 * f32(3, 4), "b": np.array([1.5, -2.0, 0.75, -3.25], dtype=np.float32)}, {}, ["y"]),
    ("mod_int32_python_sign", "Mod", 13, {},
     {"a": rng.integers(-100, 100, (2, 6)).astype(np.int32), "b": np.array([3, -7, 5, -2, 11, -13], dtype=np.int32)}, {}, ["y"]),
    ("gather_nd_batch_dims1_negative", "GatherND", 13, {"batch_dims": 1},
     {"data": f32(2, 3, 4, 2)}, {"indices": np.array([[[-1, 0], [2, 3]], [[0, -4], [1, 1]]], dtype=np.int64)}, ["y"]),
    ("gather_nd_slices", "GatherND", 13, {},
     {"data": f32(3, 4, 5)}, {"indices": np.array([[[2], [0]], [[1], [-3]]], dtype=np.int64)}, ["y"]),
    ("instance_normalization_3d", "InstanceNormalization", 22, {"epsilon": 1e-4},
     {"x": f32(2, 3, 7)}, {"scale": f32(3), "bias": f32(3)}, ["y"]),
    ("sin_cos_large_arguments", "Sin", 22, {}, {"x": 100 * f32(4, 5)}, {}, ["y"]),
]


def main():
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    manifest = []
    for name, op, opset, attributes, feeds, constants, outputs in CASES:
        node = helper.make_node(op, list(feeds) + list(constants), outputs, **attributes)
        graph = helper.make_graph(
            [node], name,
            [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
            # Every output has the first input's element type (float32 statistics for float32 X).
            [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(next(iter(feeds.values())).dtype), None) for o in outputs],
            initializer=[numpy_helper.from_array(v, k) for k, v in constants.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 9
        try:
            results = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
            reference = "onnxruntime"
        except Exception:  # noqa: BLE001
            results = ReferenceEvaluator(model).run(None, feeds)
            reference = "onnx.reference"
        folder = os.path.join(OUT, name)
        os.makedirs(folder)
        onnx.save(model, os.path.join(folder, "model.onnx"))
        for k, v in feeds.items():
            np.save(os.path.join(folder, f"input_{k}.npy"), v)
        for o, v in zip(outputs, results):
            np.save(os.path.join(folder, f"output_{o}.npy"), np.asarray(v))
        manifest.append({"name": name, "op": op, "opset": opset, "inputs": list(feeds), "outputs": outputs, "reference": reference})
        print(f"{name}: {op}-{opset}, reference {reference}")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "tools/gen_ort_cases.py", "cases": manifest}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
