#!/usr/bin/env python3
"""Write the reference value types of the model zoo for cbam-run's shape-inference test.

For every export in Models/manifest.json, fixes each graph input's dimensions to
the shape of its stored input (.npy, batch 2), runs ONNX's own shape inference
(`onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)`) and
records the element type and shape of every value whose shape ONNX infers fully
(values with a symbolic or unknown dimension, or no shape, are left out):

  {"<file>": {"<value name>": {"type": <TensorProto elem type>, "shape": [ints]}, ...}, ...}

Tests/CBAMRuntimeTests/ShapeInferenceTests.swift checks cbam-run's ShapeInference
against it. The file is committed; re-run after re-exporting the zoo:

  python3 tools/shape_reference.py            # writes Tests/CBAMRuntimeTests/Fixtures/zoo_shapes.json
  python3 tools/shape_reference.py --check    # exits 1 if the stored file is out of date
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "Models")
OUTPUT = os.path.join(ROOT, "Tests", "CBAMRuntimeTests", "Fixtures", "zoo_shapes.json")


def fix_inputs(model, entry):
    """Sets every dimension of the graph inputs that have stored data to the data's shape."""
    shapes = {i["name"]: np.load(os.path.join(MODELS, i["file"]), mmap_mode="r").shape for i in entry["inputs"]}
    for value in model.graph.input:
        if value.name not in shapes:
            continue
        shape = shapes[value.name]
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise SystemExit(f"{entry['file']}: input {value.name} has rank {len(dims)} but its data has shape {shape}")
        for dim, size in zip(dims, shape):
            dim.Clear()
            dim.dim_value = size


def known_types(model):
    """name -> {"type", "shape"} for every value with a fully known tensor shape."""
    graph = model.graph
    result = {}
    for value in list(graph.value_info) + list(graph.output):
        if not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        if not tensor.HasField("shape") or tensor.elem_type == 0:
            continue
        dims = tensor.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            continue
        result[value.name] = {"type": tensor.elem_type, "shape": [d.dim_value for d in dims]}
    return result


def reference():
    with open(os.path.join(MODELS, "manifest.json")) as f:
        entries = json.load(f)["entries"]
    table = {}
    for entry in entries:
        path = os.path.join(MODELS, entry["file"])
        if not os.path.exists(path):
            continue
        model = onnx.load(path)
        fix_inputs(model, entry)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        table[entry["file"]] = known_types(inferred)
    return table


def encode(table):
    # One line per model keeps the committed file small and its diffs readable.
    lines = [json.dumps(name) + ": " + json.dumps(values, sort_keys=True, separators=(",", ":"))
             for name, values in sorted(table.items())]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the stored file instead of writing it")
    args = parser.parse_args()
    text = encode(reference())
    if args.check:
        with open(OUTPUT) as f:
            same = f.read() == text
        print("zoo_shapes.json is " + ("up to date" if same else "out of date"))
        sys.exit(0 if same else 1)
    with open(OUTPUT, "w") as f:
        f.write(text)
    table = json.loads(text)
    print(f"wrote {os.path.relpath(OUTPUT, ROOT)}: {len(table)} models, {sum(len(v) for v in table.values())} values")


if __name__ == "__main__":
    main()
