#!/usr/bin/env python3
"""Dump every intermediate tensor of a model as computed by onnxruntime, for
`cbam-run model.onnx input.npy --check-against DIR`.

Each tensor is written as DIR/<safe name>.npy, where the safe name follows the same
rule as cbam-run's FileNames.safe: characters other than letters, digits, '-', '_'
and '.' become '_', leading '.' and '_' are dropped, at most 200 characters.

  python3 tools/dump_reference.py model.onnx input.npy DIR
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def safe(name):
    result = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name)
    result = result.lstrip("._") or "tensor"
    return result[:200]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    model_path, input_paths, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    model = onnx.load(model_path)
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in known:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    options = ort.SessionOptions()
    # Keep every node as written: fused or folded nodes would have no output to compare.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in session.get_inputs() if i.name not in initializers]
    feeds = {i.name: np.load(p) for i, p in zip(inputs, input_paths)}
    names = [o.name for o in session.get_outputs()]
    os.makedirs(out, exist_ok=True)
    for name, value in zip(names, session.run(names, feeds)):
        np.save(os.path.join(out, safe(name) + ".npy"), value)
    print(f"wrote {len(names)} tensors to {out}")


if __name__ == "__main__":
    main()
