#!/usr/bin/env python3
"""Benchmark cbam-run against onnxruntime on the same models, inputs and thread count.

For each model, onnxruntime runs in this process and `cbam-run bench` (release build)
in a subprocess, one after the other on the same machine; the table gives the median
milliseconds per run of each and the ratio cbam-run / onnxruntime (lower is better,
1.0 = as fast as onnxruntime).

  python3 tools/bench.py                       # the default model set, 1 thread
  python3 tools/bench.py --threads 2 --runs 30
  python3 tools/bench.py --models Models/seed004_resnet50_cbam/torchscript_op17.onnx
  python3 tools/bench.py --markdown            # the README's table
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".build", "release", "cbam-run")


def default_models():
    """One TorchScript opset-17 export of each model in the zoo manifest."""
    with open(os.path.join(ROOT, "Models", "manifest.json")) as f:
        entries = json.load(f)["entries"]
    chosen = {}
    for e in entries:
        path = os.path.join(ROOT, "Models", e["file"])
        if e["exporter"] == "torchscript" and e["opset"] == 17 and e.get("batchnorm") != "kept" and os.path.exists(path):
            chosen.setdefault(e["model"], e)
    return list(chosen.values())


def ort_median(model, feeds, threads, runs, warmup):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cbam_median(model, input_files, threads, runs, warmup):
    out = subprocess.run([BINARY, "bench", model, *input_files, "--runs", str(runs), "--warmup", str(warmup),
                          "--threads", str(threads), "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return json.loads(out.stdout)["median_ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="model files (inputs: input.npy beside them)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        sys.exit("build the release binary first: swift build -c release --product cbam-run")

    if args.models:
        jobs = [{"file": m, "model": os.path.basename(os.path.dirname(m)),
                 "inputs": [{"file": os.path.join(os.path.dirname(m), "input.npy")}]} for m in args.models]
    else:
        jobs = default_models()
    rows = []
    for job in jobs:
        model = job["file"] if os.path.isabs(job["file"]) or os.path.exists(job["file"]) else os.path.join(ROOT, "Models", job["file"])
        input_files = [i["file"] if os.path.exists(i["file"]) else os.path.join(ROOT, "Models", i["file"]) for i in job["inputs"]]
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.load(f) for i, f in zip(session.get_inputs(), input_files)}
        shape = "x".join(str(d) for d in next(iter(feeds.values())).shape)
        try:
            ort_ms = ort_median(model, feeds, args.threads, args.runs, args.warmup)
            cbam_ms = cbam_median(model, input_files, args.threads, args.runs, args.warmup)
            rows.append((job["model"], shape, cbam_ms, ort_ms, cbam_ms / ort_ms))
        except Exception as error:  # report and go on: one model must not hide the others
            print(f"{job['model']}: {error}", file=sys.stderr)
    if args.markdown:
        print(f"| model | input | cbam-run ms | onnxruntime ms | ratio |")
        print("|---|---|---:|---:|---:|")
        for name, shape, c, o, r in rows:
            print(f"| {name} | {shape} | {c:.3f} | {o:.3f} | {r:.2f} |")
    else:
        print(f"{'model':40} {'input':>16} {'cbam-run ms':>12} {'ort ms':>10} {'ratio':>7}")
        for name, shape, c, o, r in rows:
            print(f"{name:40} {shape:>16} {c:12.3f} {o:10.3f} {r:7.2f}")
    if rows:
        print(f"geometric mean ratio: {float(np.exp(np.mean(np.log([r[4] for r in rows])))):.2f}  "
              f"({len(rows)} models, {args.threads} thread(s), median of {args.runs} runs)")


if __name__ == "__main__":
    main()
