"""Per-call overhead of cbamrun.Session.run from Python over the Swift `cbam-run bench` on the
same model and input (issue 14's goal: at most 20 µs extra on the small CBAM block).

    swift build -c release --product cbamrun && swift build -c release --product cbam-run
    python3 python/tools/call_overhead.py [--runs 2000] [--rounds 3]

Both use the release build, one thread and CBAM_CONV=im2col (the same Conv kernel); each round
times `cbam-run bench` (a fresh process) then Session.run, and prints both medians and the load
average, because on a shared machine the difference moves from round to round; the last line
compares the fastest round of each side.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default=str(REPO / "Models/seed000_cbam_fc_k7/torchscript_op17.onnx"))
parser.add_argument("--input", default=str(REPO / "Models/seed000_cbam_fc_k7/input.npy"))
parser.add_argument("--runs", type=int, default=2000)
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()

os.environ.setdefault("CBAMRUN_LIBRARY", str(REPO / ".build/release/libcbamrun.so"))
os.environ["CBAM_CONV"] = "im2col"
sys.path.insert(0, str(REPO / "python"))
import numpy as np  # noqa: E402

import cbamrun  # noqa: E402

x = np.load(args.input)
session = cbamrun.Session(args.model, threads=1)
feeds = {session.inputs[0].name: x}


def python_median_us():
    for _ in range(100):
        session.run(feeds)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        session.run(feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def swift_median_us():
    command = [str(REPO / ".build/release/cbam-run"), "bench", args.model, args.input, "--runs", str(args.runs),
               "--warmup", "100", "--threads", "1", "--json"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["median_ms"] * 1000


swifts, pythons = [], []
for index in range(args.rounds):
    swift, python = swift_median_us(), python_median_us()
    swifts.append(swift)
    pythons.append(python)
    load = os.getloadavg()[0]
    print(f"round {index}: cbam-run bench {swift:.1f} µs, Session.run {python:.1f} µs, extra {python - swift:.1f} µs "
          f"(load average {load:.1f} on {os.cpu_count()} CPUs)")
# What a shared machine adds (another tenant's work, preemption) only ever adds time, and
# not to both sides of a round alike: the fastest round of each side is the least disturbed.
if args.rounds > 1:
    print(f"fastest rounds: cbam-run bench {min(swifts):.1f} µs, Session.run {min(pythons):.1f} µs, "
          f"extra {min(pythons) - min(swifts):.1f} µs")
