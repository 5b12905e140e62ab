#!/usr/bin/env python3
"""Throughput of batch inference on 2 CPUs, two ways, on the same inputs (issue 14):

  shards  two `cbam-run batch MODEL DIR --shard I/2 --threads 1` processes in parallel
  ray     Ray Data on `ray.init(num_cpus=2)`: cbamrun.ray.map_batches, one Session per actor

Inputs: N `.npy` files of the demo model's input shape ([1, 3, 64, 64], made from the stored
input with a little noise, fixed seed). Both time the whole job from start to the last result
(model loading and planning included: each shard process and each actor loads the model once;
`ray.init` itself is not counted). Prints inputs/s of each and the ratio ray / shards.

    python3 tools/ray_vs_shards.py [--count 200] [--model Models/demo_shapes_cbam/torchscript_op17.onnx]
Needs the release builds: swift build -c release --product cbam-run; swift build -c release --product cbamrun.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=25, help="rows per map_batches call (stacked into one run)")
    parser.add_argument("--model", default=str(ROOT / "Models/demo_shapes_cbam/torchscript_op17.onnx"))
    parser.add_argument("--binary", default=str(ROOT / ".build/release/cbam-run"))
    args = parser.parse_args()
    os.environ.setdefault("CBAMRUN_LIBRARY", str(ROOT / ".build/release/libcbamrun.so"))
    sys.path.insert(0, str(ROOT / "python"))
    # Ray's workers start from the local cluster's environment: they find the package the same way.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))

    base = np.load(Path(args.model).parent / "input.npy")[:1]
    rng = np.random.default_rng(0)
    arrays = [(base + rng.normal(0, 0.05, base.shape)).astype(np.float32) for _ in range(args.count)]
    work = Path(tempfile.mkdtemp(prefix="ray-vs-shards-"))
    inputs = work / "inputs"
    inputs.mkdir()
    for i, array in enumerate(arrays):
        np.save(inputs / f"{i:04d}.npy", array)

    # Two shard processes side by side, one thread each.
    start = time.perf_counter()
    processes = [subprocess.Popen([args.binary, "batch", args.model, str(inputs), "--output-dir", str(work / f"shard{i}"),
                                   "--shard", f"{i}/2", "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(2)]
    codes = [p.wait() for p in processes]
    shards = time.perf_counter() - start
    lines = sum(len((work / f"shard{i}" / "results.jsonl").read_text().splitlines()) for i in range(2))
    assert codes == [0, 0] and lines == args.count, (codes, lines)

    import ray
    import cbamrun.ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    dataset = ray.data.from_items([{"id": i, "input": a[0]} for i, a in enumerate(arrays)])
    start = time.perf_counter()
    rows = cbamrun.ray.map_batches(dataset, args.model, concurrency=2, batch_size=args.batch_size).take_all()
    ray_seconds = time.perf_counter() - start
    assert len(rows) == args.count
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    print(f"inputs: {args.count} × {list(base.shape)}; model {os.path.relpath(args.model, ROOT)}")
    print(f"shards (2 × cbam-run batch --shard I/2, 1 thread each): {shards:.2f} s, {args.count / shards:.1f} inputs/s")
    print(f"ray (map_batches, 2 actors, batch_size {args.batch_size}): {ray_seconds:.2f} s, {args.count / ray_seconds:.1f} inputs/s")
    print(f"ray / shards throughput: {shards / ray_seconds:.2f}")


if __name__ == "__main__":
    main()
